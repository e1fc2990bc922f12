"""How a policy is named and where its artifacts lie: its id (<method>/<value>/seed<n>, a later
round's /round<r>, a point along its run's /at/<fraction>), the one path template every rule and
script uses, and the reading of an id back into its parts.
"""

import re
from typing import NamedTuple

from pipeline.methods import METHODS, REFERENCE

LATER_ROUND = r"[2-9]|[1-9]\d+"  # rounds with a /round<r> suffix: round 1 is the ordinary run
POINT = r"\d[0-9.e-]*"  # a point along a run: the fraction of its steps, as point_name writes it


def point_name(fraction: float) -> str:
    """A point along a run (`trajectory`) as its policy id and folder name write it."""
    return f"{fraction:g}"


class PolicyId(NamedTuple):
    method: str
    value: str  # as written in the id
    seed: int
    round: int  # 1: the ordinary run
    at: float | None  # the fraction of its run's steps of a point along it; None: the final policy


def policy_id(method: str, value, seed: int, rnd: int = 1, at: float | None = None) -> str:
    """<method>/<value>/seed<n>, /round<r> after it from the second round on (round 1 is the
    ordinary run: its id, and so its cached artifacts, do not change when rounds are added), and
    /at/<fraction> for a point along the run; the final policy has none."""
    pid = f"{method}/{value}/seed{seed}"
    pid = pid if rnd == 1 else f"{pid}/round{rnd}"
    return pid if at is None else f"{pid}/at/{point_name(at)}"


# Where a policy's artifacts lie, by its id: the one path template every rule and script uses. A
# rule passes an id of wildcards, e.g. policy_id("{method}", "{value}", "{seed}").
POLICY_PATHS = {
    "model": "results/policies/{pid}/model",  # its model folder
    "metrics": "results/policies/{pid}/metrics.csv",  # its run's metrics
    "trajectory": "results/policies/{pid}/at",  # the points along its run
    "eval": "results/eval/{pid}",  # its evaluation's files
    "data": "results/rounds/{pid}",  # a later round's samples, pairs and pi_ref's log-probs
    "checkpoint": "results/checkpoints/{flat}",  # its run's checkpoint, while it trains
    "pool": "results/eval/{pid}.parquet",  # Best-of-N's pool of pi_ref samples (pi*'s)
}


def policy_path(pid: str, part: str, *inside: str) -> str:
    """The path of a policy's `part` (a key of POLICY_PATHS), or of a file `inside` it."""
    return "/".join([POLICY_PATHS[part].format(pid=pid, flat=pid.replace("/", "_")), *inside])


def job_log(stage: str, pid: str) -> str:
    """The log of a job that makes a policy or its round's data, named after both (once where
    the policy is named after the stage, as Best-of-N's are)."""
    name = pid.replace("/", "_")
    return f"results/logs/{name if pid.startswith(stage + '/') else f'{stage}_{name}'}.log"


def policy_id_pattern(methods) -> str:
    """The regular expression of the policy ids of `methods` (pi_ref's, "sft", is not one)."""
    return (
        rf"({'|'.join(map(re.escape, methods))})/[^/]+/seed\d+(/round({LATER_ROUND}))?"
        rf"(/at/{POINT})?"
    )


def split_policy_id(pid: str) -> PolicyId:
    """(method, value as written, seed, round, at) of a trained or Best-of-N policy's id: the one
    place that reads the format."""
    if not re.fullmatch(policy_id_pattern(METHODS), pid):
        raise ValueError(
            f"'{pid}' is not a policy id of the form <method>/<value>/seed<n>"
            "[/round<r>][/at/<fraction>] of a known method"
        )
    method_name, value, seed, *rest = pid.split("/")
    rnd = int(rest[0][5:]) if rest and rest[0].startswith("round") else 1
    at = float(rest[-1]) if len(rest) >= 2 and rest[-2] == "at" else None
    return PolicyId(method_name, value, int(seed.removeprefix("seed")), rnd, at)


def run_of(pid: str) -> str:
    """The id of the run a policy belongs to: its final policy's (a point along it drops /at/)."""
    method_name, value, seed, rnd, _ = split_policy_id(pid)
    return policy_id(method_name, value, seed, rnd)


def parse_policy_id(pid: str) -> dict:
    """{'method', 'param', 'value', 'seed', 'round', 'at'} of a policy id; pi_ref is method
    'pi_ref'. `at` is the fraction of its run's steps (1 for the final policy; NaN for pi_ref and
    the policies no run trains)."""
    if pid == REFERENCE:
        return {
            "method": "pi_ref",
            "param": "",
            "value": float("nan"),
            "seed": float("nan"),
            "round": float("nan"),
            "at": float("nan"),
        }
    method_name, value, seed, rnd, at = split_policy_id(pid)
    trained = METHODS[method_name].trainer is not None
    return {
        "method": method_name,
        "param": METHODS[method_name].swept,
        "value": float(value),
        "seed": seed,
        "round": rnd,
        "at": (1.0 if at is None else at) if trained else float("nan"),
    }
