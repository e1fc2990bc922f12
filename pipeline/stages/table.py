"""Stage `table`: results/table.csv, one row per policy and one per (method, value, round) over
seeds.

Columns: kind (policy | aggregate | optimal), method (pi_ref, a method of pipeline.methods, or
optimal), param and value (the swept hyperparameter; beta for optimal), seed (empty on aggregate
rows), round (1, or the training round of an iterated method; empty for pi_ref), at (only in a
study with points along its runs, `trajectory`: the fraction of its run's steps at which the
policy was saved, 1 for a run's final policy, empty for pi_ref and Best-of-N), n (samples),
n_seeds, sentiment and kl (means) each with the bounds of a 95% percentile bootstrap interval
(sentiment_lo/hi, kl_lo/hi; see pipeline.bootstrap), ci_over (what the interval resamples:
`prompts`, or `seeds+prompts` on an aggregate row of two seeds or more), kl_k1 (log-ratio estimate
on the same samples), kl_reverse (exact KL(pi_ref || pi) on pi_ref's samples), length (mean
response tokens), distinct_2, ess (optimal rows only: the effective sample size of the estimate).
The full table appends the optimal frontier's rows (pipeline.stages.optimal) from `--optimal`.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import cli, io
from pipeline.bootstrap import ci_over, interval, replicates
from pipeline.config import Table, borrow, given, record
from pipeline.evaluations import group_policies, policy_folders, read_eval, with_points
from pipeline.logs import get_logger
from pipeline.methods import METHODS
from pipeline.paths import parse_policy_id
from pipeline.settings import read

log = get_logger("table")


@record
class Settings(Table):
    """The `table` rule's settings: config section `table`, with the study's policies."""

    policies: list[str] = given(
        "the study's policy ids, in row order; each names its evaluation folder"
    )
    extensions: borrow("train.extensions")  # to parse the policy ids of methods of one's own


COLUMNS = [
    "kind",
    "method",
    "param",
    "value",
    "seed",
    "round",
    "n",
    "n_seeds",
    "sentiment",
    "sentiment_lo",
    "sentiment_hi",
    "kl",
    "kl_lo",
    "kl_hi",
    "ci_over",
    "kl_k1",
    "kl_reverse",
    "length",
    "distinct_2",
    "ess",
]


def summarise(evals: list[tuple], n_boot: int, seed: int) -> dict:
    """Means and 95% intervals over the evaluations of one policy's seeds (one or more)."""
    samples = pd.concat([e[0] for e in evals])
    per_seed = [e[0] for e in evals]
    s_lo, s_hi = interval(replicates(per_seed, "score", n_boot, seed))
    k_lo, k_hi = interval(replicates(per_seed, "kl", n_boot, seed))
    return {
        "n": len(samples),
        "n_seeds": len(evals),
        "sentiment": samples["score"].mean(),
        "sentiment_lo": s_lo,
        "sentiment_hi": s_hi,
        "kl": samples["kl"].mean(),
        "kl_lo": k_lo,
        "kl_hi": k_hi,
        "ci_over": ci_over(len(evals)),
        "kl_k1": samples["kl_k1"].mean(),
        "kl_reverse": pd.concat([e[1] for e in evals])["kl_reverse"].mean(),
        "length": samples["length"].mean(),
        "distinct_2": float(np.mean([e[2] for e in evals])),
    }


def sort_rows(table: pd.DataFrame) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(["pi_ref", *METHODS, "optimal"])}
    kinds = {"policy": 0, "aggregate": 1, "optimal": 2}
    table = table.sort_values(
        ["kind", "method", "value", "round", "at", "seed"]
        if "at" in table
        else ["kind", "method", "value", "round", "seed"],
        key=lambda c: (
            c.map(order) if c.name == "method" else c.map(kinds) if c.name == "kind" else c
        ),
        kind="stable",
    )
    return table.reset_index(drop=True)


def build_table(
    folders: dict[str, Path], n_boot: int, seed: int, optimal: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The table of the policies whose evaluation folders `folders` maps their ids to."""
    policies = list(folders)
    evals = {pid: read_eval(folders[pid]) for pid in policies}
    rows = [
        {"kind": "policy", **parse_policy_id(pid), **summarise([evals[pid]], n_boot, seed)}
        for pid in policies
    ]
    for (method, param, value, rnd, at), members in group_policies(policies).items():
        rows.append(
            {
                "kind": "aggregate",
                "method": method,
                "param": param,
                "value": value,
                "seed": float("nan"),
                "round": rnd,
                "at": at,
                **summarise([evals[pid] for pid in members], n_boot, seed),
            }
        )
    table = pd.DataFrame(rows, columns=[*COLUMNS, "at"])
    table = table[with_points(COLUMNS, table)]
    if optimal is not None:
        table = pd.concat([table, optimal.reindex(columns=table.columns)], ignore_index=True)
    return sort_rows(table)


def main(argv=None):
    args = cli.parse(
        __doc__, ["evals", "optimal"], ["out"], argv, optional=("optimal",), lists=("evals",)
    )
    p = read(Settings, args.params, "table")
    optimal = pd.read_csv(args.optimal) if args.optimal else None
    folders = policy_folders(p.policies, args.evals)
    table = build_table(folders, p.bootstrap, p.seed, optimal)
    io.write_csv(table, args.out, ["seed", "round"], io.SIX_DIGITS)
    log.info(
        "\n%s",
        table[
            ["kind", "method", "value", "seed", "round", "sentiment", "kl", "ci_over"]
        ].to_string(),
    )


if __name__ == "__main__":
    cli.run(main)
