"""Stage `comparison`: which method wins at equal KL. results/comparison.csv.

The table puts each policy at whatever KL(pi || pi_ref) its training landed on, so two rows of
it are rarely comparable. Here every evaluated point (pi_ref and each aggregate row: a method,
swept value, round and point along the run over its seeds) is compared with every frontier it can
be read against:

- each other series with at least two points (a method's aggregate points of one round, its swept
  values' final policies and the points along their runs: its "frontier"), read at the point's KL
  by linear interpolation between the series' points sorted by KL, inside the series' measured KL
  range only (no extrapolation: outside, the row says `outside range` and carries no value);
- the optimal frontier pi* (pipeline.stages.optimal), on its grid points whose ESS is at least
  `min_ess`; its `difference` is minus the gap to the optimum. The optimal reward can only grow
  with the KL budget, so a point beyond pi*'s reliable range is read against pi* at the range's
  end, a lower bound of the optimum at the point's KL (`read_as = lower bound`: the difference
  is then at most the one given, and only `worse` is a verdict).

difference = point's sentiment - frontier's sentiment at the point's KL, with a 95% bootstrap
interval: in each replicate (pipeline.bootstrap; seeds then prompts with two seeds or more,
prompts only with one) the frontier is redrawn through its points' replicated (KL, sentiment)
and read at the point's replicated KL. Policies evaluated on the same prompts share their
prompt draws, so the interval is that of a paired difference. A replicate whose point falls
outside its frontier's replicated range is left out; `boot_defined` is the fraction kept.
"""

from pathlib import Path

import pandas as pd

from pipeline import cli, io
from pipeline.evaluations import policy_folders, with_points
from pipeline.frontiers import Comparison as Settings
from pipeline.frontiers import compare, evaluated_points, method_series, optimal_series
from pipeline.logs import get_logger
from pipeline.settings import read

log = get_logger("comparison")


COLUMNS = [
    "method",
    "param",
    "value",
    "round",
    "n_seeds",
    "sentiment",
    "kl",
    "against",
    "against_round",
    "against_kl_min",
    "against_kl_max",
    "against_sentiment",
    "against_sentiment_lo",
    "against_sentiment_hi",
    "difference",
    "difference_lo",
    "difference_hi",
    "boot_defined",
    "ci_over",
    "read_as",
    "verdict",
]


def build_comparison(folders: dict[str, Path], pool: pd.DataFrame, p: Settings) -> pd.DataFrame:
    points = evaluated_points(folders, p.bootstrap, p.seed)
    series = method_series(points)
    best = optimal_series(pool, p)
    if len(best["kl"]) < 2:
        log.warning(
            "pi*: fewer than two grid points with ESS >= %g; no gap to the optimum", p.min_ess
        )
    else:
        series.append(best)
    rows = []
    for point in points:
        head = {
            k: point[k]
            for k in ("method", "param", "value", "round", "at", "n_seeds", "sentiment", "kl")
        }
        for s in series:
            if (s["name"], s["round"]) != (point["method"], point["round"]):
                rows.append(head | compare(point, s))
    table = pd.DataFrame(rows, columns=[*COLUMNS, "at"])
    return table[with_points(COLUMNS, table)]


def describe(row) -> str:
    """A row in plain words."""
    name = row.method if row.method == "pi_ref" else f"{row.method} {row.param} {row.value:g}"
    if getattr(row, "at", 1) < 1:
        name += f" at {row.at:g} of its run"
    if row.verdict == "outside range":
        return (
            f"{name} (KL {row.kl:.2f}): outside {row.against}'s measured KL range "
            f"[{row.against_kl_min:.2f}, {row.against_kl_max:.2f}]"
        )
    bound = (
        ", at most: pi* at its last reliable KL is a lower bound"
        if row.read_as == "lower bound"
        else ""
    )
    return (
        f"{name} vs {row.against} at KL {row.kl:.2f}: {row.difference:+.3f} "
        f"[{row.difference_lo:+.3f}, {row.difference_hi:+.3f}]"
        f" ({row.verdict}; {row.ci_over}{bound})"
    )


def main(argv=None):
    args = cli.parse(__doc__, ["evals", "pool"], ["out"], argv, lists=("evals",))
    p = read(Settings, args.params, "comparison")
    pool = io.read_parquet(args.pool, ["prompt_id", "sample_id", "score"])
    table = build_comparison(policy_folders(p.policies, args.evals), pool, p)
    io.write_csv(table, args.out, ["round"], io.SIX_DIGITS)
    log.info("\n%s", "\n".join(describe(r) for r in table.itertuples()))


if __name__ == "__main__":
    cli.run(main)
