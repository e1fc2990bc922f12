"""Stage `leaderboard`: the number a researcher quotes. results/leaderboard.csv.

For every method with at least two points (its frontier, round 1: its swept values and the points
along their runs) and every KL budget of
`leaderboard.budgets` (nats of KL(pi || pi_ref) per response): the method's reward at that KL,
read on its own frontier by linear interpolation inside its measured KL range (outside it: no
number, `read_as = outside range`, as the comparison does), with a 95% bootstrap interval; pi*'s
reward at the same KL (pipeline.stages.optimal; beyond its reliable range its last reliable
reward, a lower bound of the optimum); and the gap, the method's reward minus pi*'s, with the
interval of that paired difference (the same bootstrap draws of seeds and prompts for both). Rows
are ranked by reward within each budget. Best-of-N's KL is the closed-form bound, so its row
reads a bound.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import cli, io
from pipeline.bootstrap import ci_over, interval
from pipeline.config import Leaderboard, record
from pipeline.evaluations import policy_folders
from pipeline.frontiers import (
    Comparison,
    evaluated_points,
    frontier_at,
    method_series,
    optimal_series,
)
from pipeline.logs import get_logger
from pipeline.methods import METHODS
from pipeline.settings import read

log = get_logger("leaderboard")


@record
class Settings(Comparison, Leaderboard):
    """The `leaderboard` rule's settings: config section `leaderboard`, with the comparison's (pi*'s
    settings, the full study's policies)."""


COLUMNS = [
    "budget",
    "rank",
    "method",
    "label",
    "n_points",
    "kl_min",
    "kl_max",
    "read_as",
    "sentiment",
    "sentiment_lo",
    "sentiment_hi",
    "optimal",
    "optimal_lo",
    "optimal_hi",
    "optimal_read_as",
    "gap",
    "gap_lo",
    "gap_hi",
    "ci_over",
]


def read_at(series: dict, kl: float, monotone: bool = False):
    """(reward, its replicates, how it was read) of a frontier at a fixed KL; None outside its
    range, unless `monotone` and beyond it (then its last point: a lower bound)."""
    n_boot = series["kl_reps"].shape[0]
    at = frontier_at(series["kl"], series["sentiment"], kl)[0]
    if not np.isnan(at):
        return (
            at,
            frontier_at(series["kl_reps"], series["sentiment_reps"], np.full(n_boot, kl)),
            "interpolated",
        )
    if monotone and kl > series["kl"].max():
        end = int(np.argmax(series["kl"]))
        return series["sentiment"][end], series["sentiment_reps"][:, end], "lower bound"
    return None


def build_leaderboard(folders: dict[str, Path], pool: pd.DataFrame, p: Settings) -> pd.DataFrame:
    points = evaluated_points(folders, p.bootstrap, p.seed)
    frontiers = [s for s in method_series(points) if s["round"] == 1]
    best = optimal_series(pool, p)
    rows = []
    for budget in p.budgets:
        optimum = read_at(best, budget, monotone=True) if len(best["kl"]) >= 2 else None
        for s in frontiers:
            row = {
                "budget": budget,
                "method": s["name"],
                "label": METHODS[s["name"]].label,
                "n_points": len(s["kl"]),
                "kl_min": s["kl"].min(),
                "kl_max": s["kl"].max(),
                "ci_over": ci_over(s["n_seeds"]),
            }
            own = read_at(s, budget)
            if own is None:
                rows.append(row | {"read_as": "outside range"})
                continue
            at, reps, row["read_as"] = own
            lo, hi = interval(reps)
            row |= {"sentiment": at, "sentiment_lo": lo, "sentiment_hi": hi}
            if optimum is not None:
                opt, opt_reps, opt_read = optimum
                o_lo, o_hi = interval(opt_reps)
                g_lo, g_hi = interval(reps - opt_reps)
                row |= {
                    "optimal": opt,
                    "optimal_lo": o_lo,
                    "optimal_hi": o_hi,
                    "optimal_read_as": opt_read,
                    "gap": at - opt,
                    "gap_lo": g_lo,
                    "gap_hi": g_hi,
                }
            rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["rank"] = table.groupby("budget")["sentiment"].rank(ascending=False, method="min")
    return table.sort_values(["budget", "rank"], na_position="last").reset_index(drop=True)


def main(argv=None):
    args = cli.parse(__doc__, ["evals", "pool"], ["out"], argv, lists=("evals",))
    p = read(Settings, args.params, "leaderboard")
    pool = io.read_parquet(args.pool, ["prompt_id", "sample_id", "score"])
    table = build_leaderboard(policy_folders(p.policies, args.evals), pool, p)
    io.write_csv(table, args.out, ["rank"], io.SIX_DIGITS)
    for budget, rows in table.groupby("budget"):
        ranked = rows.dropna(subset=["sentiment"])
        log.info(
            "KL %g nats: %s",
            budget,
            ", ".join(
                f"{r.method} {r.sentiment:.3f} (gap {r.gap:+.3f})" for r in ranked.itertuples()
            )
            or "none",
        )


if __name__ == "__main__":
    cli.run(main)
