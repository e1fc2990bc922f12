"""Stage `pairs`: every C(n, 2) pair of a prompt's scored samples; chosen = the higher score.

Pairs with exactly equal scores carry no preference and are dropped (counted in the log).
"""

from itertools import combinations

import numpy as np
import pandas as pd

from pipeline import cli, io
from pipeline.logs import get_logger

log = get_logger("pairs")


def make_pairs(scored: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(pairs, number of ties dropped). One row per (prompt, chosen, rejected)."""
    if scored["score"].isna().any():
        row = int(np.flatnonzero(scored["score"].isna().to_numpy())[0])
        raise ValueError(f"score is NaN at row {row} (prompt_id {scored['prompt_id'].iloc[row]})")
    rows, ties = [], 0
    for prompt_id, group in scored.groupby("prompt_id", sort=True):
        group = group.sort_values("sample_id")
        for a, b in combinations(group.itertuples(index=False), 2):
            if a.score == b.score:
                ties += 1
                continue
            w, l = (a, b) if a.score > b.score else (b, a)
            rows.append({
                "prompt_id": prompt_id,
                "prompt_ids": list(w.prompt_ids),
                "chosen_ids": list(w.completion_ids),
                "rejected_ids": list(l.completion_ids),
                "chosen_score": w.score,
                "rejected_score": l.score,
                "chosen": w.completion,
                "rejected": l.completion,
            })
    return pd.DataFrame(rows, columns=["prompt_id", "prompt_ids", "chosen_ids", "rejected_ids",
                                       "chosen_score", "rejected_score", "chosen", "rejected"]), ties


def main(argv=None):
    args = cli.parse(__doc__, ["scores"], ["out"], argv)
    scored = io.read_parquet(args.scores, ["prompt_id", "sample_id", "prompt_ids",
                                           "completion_ids", "completion", "score"])
    pairs, ties = make_pairs(scored)
    if pairs.empty:
        raise ValueError(f"{args.scores}: no preference pairs (every pair of samples is tied)")
    io.write_parquet(pairs, args.out)
    log.info("%d pairs from %d prompts, %d exact ties dropped, mean margin %.3f -> %s",
             len(pairs), scored["prompt_id"].nunique(), ties,
             (pairs["chosen_score"] - pairs["rejected_score"]).mean(), args.out)


if __name__ == "__main__":
    cli.run(main)
