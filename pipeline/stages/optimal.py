"""Stage `optimal`: the optimal reward-KL frontier pi*, estimated from samples of pi_ref (the
estimate and its equations: pipeline.frontiers). The samples are the Best-of-N stage's pool
(max(best_of_n.n) samples of pi_ref per evaluation prompt, seed train.seeds[0]).

Writes results/optimal.csv: one row per beta of the grid, the table's columns (kind and method
`optimal`, param `beta`; intervals: prompts resampled, pipeline.bootstrap) plus `pool_size` (N).
"""

import numpy as np
import pandas as pd

from pipeline import cli, io
from pipeline.bootstrap import ci_over, interval
from pipeline.frontiers import Optimal as Settings
from pipeline.frontiers import beta_grid, frontier_replicates, pool_matrix
from pipeline.logs import get_logger
from pipeline.settings import read

log = get_logger("optimal")


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
    io.write_csv(frontier, args.out, float_format=io.SIX_DIGITS)
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
