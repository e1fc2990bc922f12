"""Stage `comparison`: which method wins at equal KL. results/comparison.csv.

The table puts each policy at whatever KL(pi || pi_ref) its training landed on, so two rows of
it are rarely comparable. Here every evaluated point (pi_ref and each aggregate row: a method,
swept value, round and point along the run over its seeds) is compared with every frontier it can
be read against:

- each other series with at least two points (a method's aggregate points of one round, its swept
  values' final policies and the points along their runs: its "frontier"), read at the point's KL
  by linear interpolation between the series' points sorted by KL, inside the series' measured KL
  range only (no extrapolation: outside, the row says `outside range` and carries no value);
- the optimal frontier pi* (pipeline.optimal), on its grid points whose ESS is at least
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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import cli, io
from pipeline.bootstrap import ci_over, interval, replicates
from pipeline.logs import get_logger
from pipeline.methods import REFERENCE
from pipeline.optimal import Settings as Optimal
from pipeline.optimal import beta_grid, frontier_replicates, pool_matrix
from pipeline.settings import read
from pipeline.table import group_policies, policy_folders, read_eval, with_points

log = get_logger("comparison")


@dataclass(frozen=True)
class Settings(Optimal):
    """The `comparison` rule's settings (config sections `optimal` and `table`: pi*'s, as the
    optimal stage reads them; with the study's policies and train.extensions)."""

    policies: list[str]  # the study's policy ids; each names its evaluation folder
    extensions: list[str]  # files registering methods of one's own, to parse their policy ids


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


def frontier_at(kl_points: np.ndarray, reward_points: np.ndarray, kl: np.ndarray) -> np.ndarray:
    """A frontier's reward at `kl`: linear interpolation between its (KL, reward) points sorted by
    KL, NaN outside [min KL, max KL] (no extrapolation). Points (..., K), kl (...,)."""
    kl_points, reward_points, kl = (
        np.atleast_2d(kl_points),
        np.atleast_2d(reward_points),
        np.atleast_1d(kl),
    )
    out = np.full(len(kl), np.nan)
    for b, (xs, ys, x) in enumerate(zip(kl_points, reward_points, kl)):
        order = np.lexsort((ys, xs))
        xs, ys = xs[order], ys[order]
        if xs[0] <= x <= xs[-1]:
            out[b] = np.interp(x, xs, ys)
    return out


def verdict(lo: float, hi: float, bound: bool = False) -> str:
    """better / worse / no clear difference, from the difference's interval; against a lower
    bound of the frontier only `worse` can be concluded."""
    if hi < 0:
        return "worse"
    return "no clear difference" if bound or lo <= 0 else "better"


def compare(point: dict, series: dict) -> dict:
    """One row: a point (sentiment, kl, their replicates) against a series (its points' arrays
    (K,) and replicates (n_boot, K); `monotone`: a frontier that cannot fall as KL grows)."""
    lo_kl, hi_kl = series["kl"].min(), series["kl"].max()
    row = {
        "against": series["name"],
        "against_round": series["round"],
        "against_kl_min": lo_kl,
        "against_kl_max": hi_kl,
        "ci_over": ci_over(max(point["n_seeds"], series["n_seeds"])),
    }
    at = frontier_at(series["kl"], series["sentiment"], point["kl"])[0]
    if not np.isnan(at):
        read_as = "interpolated"
        at_reps = frontier_at(series["kl_reps"], series["sentiment_reps"], point["kl_reps"])
    elif series.get("monotone") and point["kl"] > hi_kl:
        read_as, end = "lower bound", int(np.argmax(series["kl"]))
        at, at_reps = series["sentiment"][end], series["sentiment_reps"][:, end]
    else:
        return row | {"boot_defined": 0.0, "read_as": "", "verdict": "outside range"}
    f_lo, f_hi = interval(at_reps)
    d_lo, d_hi = interval(point["sentiment_reps"] - at_reps)
    return row | {
        "against_sentiment": at,
        "against_sentiment_lo": f_lo,
        "against_sentiment_hi": f_hi,
        "difference": point["sentiment"] - at,
        "difference_lo": d_lo,
        "difference_hi": d_hi,
        "boot_defined": float(np.isfinite(at_reps).mean()),
        "read_as": read_as,
        "verdict": verdict(d_lo, d_hi, read_as == "lower bound"),
    }


def evaluated_points(folders: dict[str, Path], n_boot: int, seed: int) -> list[dict]:
    """pi_ref and every aggregate (method, value, round), with bootstrap replicates."""
    policies = list(folders)
    evals = {pid: read_eval(folders[pid])[0] for pid in policies}
    nan = float("nan")
    groups = {("pi_ref", "", nan, nan, nan): [REFERENCE]} if REFERENCE in evals else {}
    groups |= group_policies(policies)
    points = []
    for (method, param, value, rnd, at), members in groups.items():
        per_seed = [evals[pid] for pid in members]
        samples = pd.concat(per_seed)
        points.append(
            {
                "method": method,
                "param": param,
                "value": value,
                "round": rnd,
                "at": at,
                "n_seeds": len(members),
                "sentiment": samples["score"].mean(),
                "kl": samples["kl"].mean(),
                "sentiment_reps": replicates(per_seed, "score", n_boot, seed),
                "kl_reps": replicates(per_seed, "kl", n_boot, seed),
            }
        )
    return points


def method_series(points: list[dict]) -> list[dict]:
    """Each (method, round) with at least two swept points, as a frontier."""
    by_series = {}
    for p in points:
        if p["method"] != "pi_ref":
            by_series.setdefault((p["method"], p["round"]), []).append(p)
    return [
        {
            "name": method,
            "round": rnd,
            "n_seeds": max(p["n_seeds"] for p in members),
            "kl": np.array([p["kl"] for p in members]),
            "sentiment": np.array([p["sentiment"] for p in members]),
            "kl_reps": np.stack([p["kl_reps"] for p in members], axis=1),
            "sentiment_reps": np.stack([p["sentiment_reps"] for p in members], axis=1),
        }
        for (method, rnd), members in by_series.items()
        if len(members) >= 2
    ]


def optimal_series(pool: pd.DataFrame, p: Optimal) -> dict:
    """pi*'s frontier over the beta grid, on the points whose ESS is at least min_ess."""
    _, rewards = pool_matrix(pool)
    est = frontier_replicates(
        rewards, beta_grid(p.beta_min, p.beta_max, p.n_beta), p.bootstrap, p.seed
    )
    keep = est["ess"] >= p.min_ess
    return {
        "name": "optimal",
        "round": 1,
        "n_seeds": 1,
        "monotone": True,
        "kl": est["kl"][keep],
        "sentiment": est["sentiment"][keep],
        "kl_reps": est["kl_reps"][:, keep],
        "sentiment_reps": est["sentiment_reps"][:, keep],
    }


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
    out = table.copy()
    out["round"] = out["round"].astype("Int64")
    with io.atomic_output(args.out) as tmp:
        out.to_csv(tmp, index=False, float_format="%.6g")
    log.info("\n%s", "\n".join(describe(r) for r in table.itertuples()))


if __name__ == "__main__":
    cli.run(main)
