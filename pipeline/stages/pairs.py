"""Stage `pairs`: every C(n, 2) pair of a prompt's scored samples; chosen = the higher score.

Pairs with exactly equal scores carry no preference and are dropped (counted in the log).
Beside them, the best-choice view of the same samples (`rankings`): each prompt's n samples
ranked by score, best first, for the Plackett-Luce listwise loss; a prompt with any tie has no
strict ranking and is left out (counted in the log). And the unpaired view, for KTO
(`unpaired`): each sample labelled desirable if its score is above its prompt's median score,
undesirable if below (a sample at the median carries no preference and is left out), with the
completion of another prompt's sample beside it for KTO's KL estimate.
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
            w, lose = (a, b) if a.score > b.score else (b, a)
            rows.append(
                {
                    "prompt_id": prompt_id,
                    "prompt_ids": list(w.prompt_ids),
                    "chosen_ids": list(w.completion_ids),
                    "rejected_ids": list(lose.completion_ids),
                    "chosen_score": w.score,
                    "rejected_score": lose.score,
                    "chosen": w.completion,
                    "rejected": lose.completion,
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "prompt_id",
            "prompt_ids",
            "chosen_ids",
            "rejected_ids",
            "chosen_score",
            "rejected_score",
            "chosen",
            "rejected",
        ],
    ), ties


def make_rankings(scored: pd.DataFrame) -> pd.DataFrame:
    """One row per prompt whose samples all differ in score: rank{k}_ids and rank{k}_score,
    k = 0 the best. Prompts with fewer samples than the most common count are left out too."""
    n = int(scored.groupby("prompt_id").size().mode().iloc[0])
    rows = []
    for prompt_id, group in scored.groupby("prompt_id", sort=True):
        if len(group) != n or group["score"].nunique() != n:
            continue
        ranked = group.sort_values("score", ascending=False)
        row = {"prompt_id": prompt_id, "prompt_ids": list(ranked["prompt_ids"].iloc[0])}
        for k, r in enumerate(ranked.itertuples(index=False)):
            row[f"rank{k}_ids"], row[f"rank{k}_score"] = list(r.completion_ids), r.score
        rows.append(row)
    columns = ["prompt_id", "prompt_ids"] + [
        f"rank{k}_{c}" for k in range(n) for c in ("ids", "score")
    ]
    return pd.DataFrame(rows, columns=columns)


def make_unpaired(scored: pd.DataFrame) -> pd.DataFrame:
    """One row per sample above or below its prompt's median score: `desirable`, and
    `kl_completion_ids`, the completion of the same-numbered sample of the next prompt (the last
    prompt's from the first), a response not drawn for this prompt.

    Relative to the prompt, not to an absolute threshold such as p(positive) > 0.5: the pairs carry
    the same comparisons, the two labels come out balanced (KTO's paper asks for lambda_D n_D /
    lambda_U n_U in [1, 4/3]), and a prompt that starts negative still teaches which of its
    completions is better."""
    ordered = scored.sort_values(["prompt_id", "sample_id"])
    prompts = [group for _, group in ordered.groupby("prompt_id", sort=True)]
    rows = []
    for i, group in enumerate(prompts):
        median = group["score"].median()
        others = prompts[(i + 1) % len(prompts)]["completion_ids"].tolist()
        for k, r in enumerate(group.itertuples(index=False)):
            if r.score == median:
                continue
            rows.append(
                {
                    "prompt_id": r.prompt_id,
                    "prompt_ids": list(r.prompt_ids),
                    "completion_ids": list(r.completion_ids),
                    "desirable": r.score > median,
                    "score": r.score,
                    "kl_completion_ids": list(others[k % len(others)]),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "prompt_id",
            "prompt_ids",
            "completion_ids",
            "desirable",
            "score",
            "kl_completion_ids",
        ],
    )


def main(argv=None):
    args = cli.parse(__doc__, ["scores"], ["out", "rankings", "unpaired"], argv)
    scored = io.read_parquet(
        args.scores,
        ["prompt_id", "sample_id", "prompt_ids", "completion_ids", "completion", "score"],
    )
    pairs, ties = make_pairs(scored)
    if pairs.empty:
        raise ValueError(f"{args.scores}: no preference pairs (every pair of samples is tied)")
    rankings = make_rankings(scored)
    unpaired = make_unpaired(scored)
    io.write_parquet(pairs, args.out)
    io.write_parquet(rankings, args.rankings)
    io.write_parquet(unpaired, args.unpaired)
    log.info(
        "%d pairs from %d prompts, %d exact ties dropped, mean margin %.3f -> %s",
        len(pairs),
        scored["prompt_id"].nunique(),
        ties,
        (pairs["chosen_score"] - pairs["rejected_score"]).mean(),
        args.out,
    )
    log.info(
        "%d of %d prompts strictly ranked (the others have a tie) -> %s",
        len(rankings),
        scored["prompt_id"].nunique(),
        args.rankings,
    )
    log.info(
        "%d samples labelled for KTO, %d desirable -> %s",
        len(unpaired),
        unpaired["desirable"].sum(),
        args.unpaired,
    )


if __name__ == "__main__":
    cli.run(main)
