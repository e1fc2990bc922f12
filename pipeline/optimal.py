"""Stage `optimal`: the optimal reward-KL frontier, estimated from samples of pi_ref.

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
beta = inf is pi_ref itself (uniform weights, KL 0). The samples are the Best-of-N stage's pool
(max(best_of_n.n) samples of pi_ref per evaluation prompt, seed train.seeds[0]).

Writes results/optimal.csv: one row per beta of the grid, the table's columns (kind and method
`optimal`, param `beta`; intervals: prompts resampled, pipeline.bootstrap) plus `pool_size` (N).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline import cli, io
from pipeline.bootstrap import ci_over, draw, interval
from pipeline.logs import get_logger
from pipeline.settings import read

log = get_logger("optimal")


@dataclass(frozen=True)
class Settings:
    """The `optimal` rule's settings (config sections `optimal` and `table`): pi*'s frontier, as
    the comparison and the leaderboard also read it."""

    beta_min: float  # the smallest beta of the grid (the most reward, the most KL)
    beta_max: float  # the largest finite beta of the grid (the closest to pi_ref)
    n_beta: int  # log-spaced betas between them; inf (pi_ref itself) is added
    min_ess: float  # points whose mean effective sample size is below this are not drawn
    bootstrap: int  # resamples of the prompts for the 95% intervals, as the table's
    seed: int  # the bootstrap's draws, the table's (paired with a one-seed policy's)


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


def optimal_frontier(pool: pd.DataFrame, betas: np.ndarray, n_boot: int, seed: int) -> pd.DataFrame:
    """results/optimal.csv's rows: pi*_beta for every beta of the grid, with 95% intervals."""
    _, rewards = pool_matrix(pool)
    est = frontier_replicates(rewards, betas, n_boot, seed)
    rows = []
    for g, beta in enumerate(betas):
        s_lo, s_hi = interval(est["sentiment_reps"][:, g])
        k_lo, k_hi = interval(est["kl_reps"][:, g])
        rows.append(
            {
                "kind": "optimal",
                "method": "optimal",
                "param": "beta",
                "value": beta,
                "round": 1,
                "n": rewards.size,
                "n_seeds": 1,
                "sentiment": est["sentiment"][g],
                "sentiment_lo": s_lo,
                "sentiment_hi": s_hi,
                "kl": est["kl"][g],
                "kl_lo": k_lo,
                "kl_hi": k_hi,
                "ci_over": ci_over(1),
                "kl_reverse": est["kl_reverse"][g],
                "ess": est["ess"][g],
                "pool_size": rewards.shape[1],
            }
        )
    return pd.DataFrame(rows)


def main(argv=None):
    args = cli.parse(__doc__, ["pool"], ["out"], argv)
    p = read(Settings, args.params, "optimal")
    pool = io.read_parquet(args.pool, ["prompt_id", "sample_id", "score"])
    betas = beta_grid(p.beta_min, p.beta_max, p.n_beta)
    frontier = optimal_frontier(pool, betas, p.bootstrap, p.seed)
    with io.atomic_output(args.out) as tmp:
        frontier.to_csv(tmp, index=False, float_format="%.6g")
    drawn = frontier[frontier["ess"] >= p.min_ess]
    log.info(
        "pi* from %d samples of pi_ref per prompt: reward %.3f to %.3f for KL %.2f to %.2f"
        " nats where ESS >= %g\n%s",
        frontier["pool_size"].iloc[0],
        drawn["sentiment"].min(),
        drawn["sentiment"].max(),
        drawn["kl"].min(),
        drawn["kl"].max(),
        p.min_ess,
        frontier[["value", "sentiment", "kl", "kl_reverse", "ess"]].to_string(),
    )


if __name__ == "__main__":
    cli.run(main)
