"""The trained methods, the hyperparameter each one sweeps, and how a policy is named on disk.

Kept free of heavy imports: the Snakefile uses it to lay out the DAG.
"""

SWEPT = {"dpo": "beta", "cringe": "b", "ppo": "target_kl"}
REFERENCE = "sft"  # the policy id of pi_ref


def policy_id(method: str, value, seed: int) -> str:
    return f"{method}/{value}/seed{seed}"


def parse_policy_id(pid: str) -> dict:
    """{'method', 'param', 'value', 'seed'} of a policy id; pi_ref is method 'pi_ref'."""
    if pid == REFERENCE:
        return {"method": "pi_ref", "param": "", "value": float("nan"), "seed": float("nan")}
    method, value, seed = pid.split("/")
    if method not in SWEPT or not seed.startswith("seed"):
        raise ValueError(f"'{pid}' is not a policy id of the form <method>/<value>/seed<n>")
    return {"method": method, "param": SWEPT[method], "value": float(value), "seed": int(seed[4:])}
