"""The trained methods, the hyperparameter each one sweeps, and how a policy is named on disk.

Kept free of heavy imports: the Snakefile uses it to lay out the DAG.
"""

SWEPT = {
    "dpo": "beta", "cringe": "b", "ppo": "target_kl",                      # the slides' table
    "ipo": "tau", "unlikelihood": "alpha", "preferred_ft": "epochs",      # the paper's baselines
    "best_of_n": "n",
    "dpo_noisy": "rate", "cdpo_noisy": "rate",                              # noisy labels
    "ppo_rm": "target_kl",                                                  # the RLHF route
    "plackett_luce": "beta", "dpo_ranked": "beta",                          # best-choice data
}
PAIRWISE = {"dpo", "cringe", "ipo", "unlikelihood", "preferred_ft", "dpo_noisy", "cdpo_noisy",
            "plackett_luce", "dpo_ranked"}  # the trainers of pipeline/preference.py
# trained on the rankings (each prompt's samples, best first) instead of the pairs
RANKED = {"plackett_luce", "dpo_ranked"}
NEEDS_REFERENCE = {"dpo", "ipo", "dpo_noisy", "cdpo_noisy", "plackett_luce", "dpo_ranked"}
TRAINED = PAIRWISE | {"ppo", "ppo_rm"}  # best_of_n has no trained policy: it samples pi_ref
# Methods whose other settings (optimiser, batch size, epochs, ...) are those of another method:
# the baselines train like DPO, and PPO on the learned reward like PPO on the true one.
SETTINGS_FROM = {"ipo": "dpo", "unlikelihood": "dpo", "preferred_ft": "dpo", "dpo_noisy": "dpo",
                 "cdpo_noisy": "dpo", "plackett_luce": "dpo", "dpo_ranked": "dpo", "ppo_rm": "ppo"}
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
