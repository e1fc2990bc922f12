"""The trained methods, the hyperparameter each one sweeps, and how a policy is named on disk.

Kept free of heavy imports: the Snakefile uses it to lay out the DAG.
"""

import re

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
# Methods that can be trained for several rounds, each on the pairs of the previous round's samples
# (iterative DPO, the Cringe paper's iterative Pairwise Cringe): the offline pairwise trainers.
ITERABLE = PAIRWISE
# Methods whose other settings (optimiser, batch size, epochs, ...) are those of another method:
# the baselines train like DPO, and PPO on the learned reward like PPO on the true one.
SETTINGS_FROM = {"ipo": "dpo", "unlikelihood": "dpo", "preferred_ft": "dpo", "dpo_noisy": "dpo",
                 "cdpo_noisy": "dpo", "plackett_luce": "dpo", "dpo_ranked": "dpo", "ppo_rm": "ppo"}
REFERENCE = "sft"  # the policy id of pi_ref
LATER_ROUND = r"[2-9]|[1-9]\d+"  # rounds with a /round<r> suffix: round 1 is the ordinary run


def policy_id(method: str, value, seed: int, rnd: int = 1) -> str:
    """<method>/<value>/seed<n>, and /round<r> after it from the second round on (round 1 is
    the ordinary run: its id, and so its cached artifacts, do not change when rounds are added)."""
    pid = f"{method}/{value}/seed{seed}"
    return pid if rnd == 1 else f"{pid}/round{rnd}"


def parse_policy_id(pid: str) -> dict:
    """{'method', 'param', 'value', 'seed', 'round'} of a policy id; pi_ref is method 'pi_ref'."""
    if pid == REFERENCE:
        return {"method": "pi_ref", "param": "", "value": float("nan"), "seed": float("nan"),
                "round": float("nan")}
    parts = pid.split("/")
    # round 1's id has no suffix; a later round's ends in /round<r>, r >= 2
    if not (len(parts) in (3, 4) and parts[0] in SWEPT and re.fullmatch(r"seed\d+", parts[2])
            and (len(parts) == 3 or re.fullmatch(rf"round({LATER_ROUND})", parts[3]))):
        raise ValueError(f"'{pid}' is not a policy id of the form <method>/<value>/seed<n>"
                         "[/round<r>]")
    method, value, seed = parts[:3]
    return {"method": method, "param": SWEPT[method], "value": float(value), "seed": int(seed[4:]),
            "round": int(parts[3][5:]) if len(parts) == 4 else 1}
