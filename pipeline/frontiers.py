"""The frontiers every comparison at equal KL reads: pi*'s, and each method's.

pi*, the optimal reward-KL frontier, estimated from samples of pi_ref.

The KL-regularised objective max_pi E_pi[r] - beta KL(pi || pi_ref) has the closed-form optimum
(DPO paper eq. 4; the slides' "closed-form solution")

    pi*_beta(y | x) = pi_ref(y | x) exp(r(x, y) / beta) / Z(x),

and for every KL budget no policy reaches more expected reward than the pi*_beta whose KL is that
budget: sweeping beta traces the frontier every method is chasing. Z(x) is intractable, but with
N samples y_1..y_N of pi_ref for a prompt, the self-normalised weights

    w_i = softmax_i(r_i / beta)

make pi* a distribution over the N samples, and per prompt

    reward     = sum_i w_i r_i,
    KL(pi* || pi_ref) = sum_i w_i log(N w_i)       (<= log N: the most N samples can express),
    KL(pi_ref || pi*) = -(1/N) sum_i log(N w_i),
    ESS        = 1 / sum_i w_i^2                    (1 to N: how many samples carry the estimate).

The estimates are exact as N grows (a duplicate of a response counts as its share of pi_ref's
mass); at small ESS they are biased towards the best few samples and capped at log N, so only the
points whose ESS, averaged over prompts, is at least `min_ess` are drawn or compared against.
beta = inf is pi_ref itself (uniform weights, KL 0).

A method's frontier is its aggregate points of one round (its swept values' final policies and
the points along their runs) sorted by KL, read at a KL by linear interpolation inside its measured
range only; pi*'s frontier, which cannot fall as the KL grows, is read beyond its reliable range
as a lower bound (its last reliable point). `compare` reads a point on a frontier with a paired
bootstrap interval of the difference.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import config
from pipeline.bootstrap import ci_over, draw, interval, replicates
from pipeline.config import borrow, given, record
from pipeline.evaluations import group_policies, read_eval
from pipeline.methods import REFERENCE


@record
class Optimal(config.Optimal):
    """pi*'s frontier's settings (config section `optimal`, with the table's bootstrap): the
    `optimal` rule's, and the comparison's and the leaderboard's reading of it."""

    bootstrap: borrow("table.bootstrap")
    seed: borrow("table.seed")  # paired with a one-seed policy's draws


@record
class Comparison(Optimal):
    """The `comparison` rule's settings (pi*'s, as the optimal stage reads them, with the study's
    policies), and the leaderboard's under its own."""

    policies: list[str] = given("the study's policy ids; each names its evaluation folder")
    extensions: borrow("train.extensions")  # to parse the policy ids of methods of one's own


def pool_matrix(pool: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The pool's prompt ids (P,) and rewards (P, N), one row per prompt, samples in id order.
    Every prompt must have the same number of samples."""
    pool = pool.sort_values(["prompt_id", "sample_id"])
    sizes = pool.groupby("prompt_id").size()
    if sizes.nunique() != 1:
        raise ValueError(
            f"the pool has {sizes.min()} to {sizes.max()} samples per prompt;"
            " pi* needs the same N for every prompt"
        )
    return sizes.index.to_numpy(), pool["score"].to_numpy(float).reshape(len(sizes), -1)


def optimal_weights(rewards: np.ndarray, beta: float) -> np.ndarray:
    """w_i = softmax_i(r_i / beta) along the last axis (uniform for beta = inf)."""
    logits = rewards / beta
    logits = logits - logits.max(-1, keepdims=True)
    w = np.exp(logits)
    return w / w.sum(-1, keepdims=True)


def optimal_per_prompt(rewards: np.ndarray, beta: float) -> dict[str, np.ndarray]:
    """pi*_beta's reward, KL(pi* || pi_ref), KL(pi_ref || pi*) and ESS per prompt, from the
    rewards (P, N) of N samples of pi_ref per prompt (see the module docstring)."""
    n = rewards.shape[-1]
    w = optimal_weights(rewards, beta)
    log_nw = np.log(n * np.where(w > 0, w, 1.0))
    return {
        "sentiment": (w * rewards).sum(-1),
        "kl": np.where(w > 0, w * log_nw, 0.0).sum(-1),
        "kl_reverse": np.where((w > 0).all(-1), -log_nw.mean(-1), np.inf),
        "ess": 1.0 / (w**2).sum(-1),
    }


def beta_grid(beta_min: float, beta_max: float, n_beta: int) -> np.ndarray:
    """n_beta log-spaced betas from beta_min to beta_max, then inf (pi_ref: KL 0)."""
    return np.append(np.geomspace(beta_min, beta_max, n_beta), np.inf)


def frontier_replicates(
    rewards: np.ndarray, betas: np.ndarray, n_boot: int, seed: int
) -> dict[str, np.ndarray]:
    """Point estimates (G,) and bootstrap replicates (n_boot, G) of pi*'s reward and KL over the
    beta grid, prompts resampled with pipeline.bootstrap's draws for one seed (paired with a
    one-seed policy's evaluation on the same prompts)."""
    _, prompts = draw(1, len(rewards), n_boot, seed)
    out = {}
    per_beta = [optimal_per_prompt(rewards, b) for b in betas]
    for key in ("sentiment", "kl", "kl_reverse", "ess"):
        values = np.stack([p[key] for p in per_beta], axis=1)  # (P, G)
        out[key] = values.mean(0)
        out[f"{key}_reps"] = values[prompts[:, 0]].mean(1)  # (n_boot, G)
    return out


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
