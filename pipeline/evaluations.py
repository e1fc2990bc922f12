"""Reading a study's evaluations: each policy's evaluation folder from the files its rule
declared, its samples, pi_ref's samples' reverse KL and its distinct-2, and the policies grouped
by method, value, round and point along the run (one per seed). The table, the comparison, the
leaderboard, the plots and the samples page all read them through these.
"""

import json
from pathlib import Path

import pandas as pd

from pipeline import io
from pipeline.paths import parse_policy_id

EVAL_FILES = ("samples.parquet", "reverse_kl.parquet", "summary.json")


def policy_folders(policies: list[str], files: list[str], names=EVAL_FILES) -> dict[str, Path]:
    """Each policy's folder (results/eval/<policy id>, results/policies/<policy id>) from the files
    its rule declared: every policy's `names`, and nothing else, so that a stage reads only the
    files Snakemake tracks."""
    given = {Path(f) for f in files}
    folders = {}
    for pid in policies:
        found = [f for f in given if f.name in names and f.parent.as_posix().endswith(f"/{pid}")]
        folder = {f.parent for f in found}
        if len(folder) != 1 or len(found) != len(names):
            raise ValueError(f"the files {names} of {pid} are not among the inputs")
        folders[pid] = folder.pop()
        given -= set(found)
    if given:
        raise ValueError(f"files of no policy given: {sorted(map(str, given))[:3]}")
    return folders


def read_eval(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """One policy's evaluation: its samples, pi_ref's samples' reverse KL, its distinct-2."""
    samples = io.read_parquet(
        folder / "samples.parquet", ["prompt_id", "score", "kl", "kl_k1", "length"]
    )
    reverse = io.read_parquet(folder / "reverse_kl.parquet", ["kl_reverse"])
    return samples, reverse, json.loads((folder / "summary.json").read_text())["distinct_2"]


POINT = ("method", "param", "value", "round", "at")  # one point of a frontier; its seeds share it


def group_policies(policies: list[str]) -> dict[tuple, list[str]]:
    """The trained policies of each `POINT`, one per seed, in order."""
    groups = {}
    for pid in policies:
        meta = parse_policy_id(pid)
        if meta["method"] != "pi_ref":
            groups.setdefault(tuple(meta[k] for k in POINT), []).append(pid)
    return groups


def with_points(columns: list[str], table: pd.DataFrame) -> list[str]:
    """The columns, with `at` after `round` when the table holds points along runs (without them
    the table keeps the columns it had before runs had points)."""
    if not (table["at"] < 1).any():
        return columns
    i = columns.index("round") + 1
    return columns[:i] + ["at"] + columns[i:]
