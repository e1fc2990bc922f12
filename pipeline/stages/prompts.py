"""Stage `prompts`: prefixes of 2-8 tokens of IMDb reviews, the length drawn per prompt.

Stored as token ids (and decoded text, for reading), so that nothing is re-tokenised later.
"""

import numpy as np
import pandas as pd

from pipeline import cli, io
from pipeline.config import Prompts as Settings
from pipeline.logs import get_logger
from pipeline.safe_loading import bos_ids, load_tokenizer
from pipeline.settings import read

log = get_logger("prompts")


def make_prompts(
    reviews: pd.DataFrame, tok, min_tokens: int, max_tokens: int, seed: int
) -> pd.DataFrame:
    """One prompt per review: its first L tokens, L ~ Uniform{min_tokens..max_tokens}.

    A review shorter than its drawn L is skipped (counted in the log) rather than given a shorter
    prompt, so every prompt length stays inside the configured range. A tokenizer that adds a BOS
    token (Llama 3's) gets it in front of every prompt, outside the L tokens of text.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_tokens, max_tokens + 1, size=len(reviews))
    ids = tok(reviews["text"].tolist(), add_special_tokens=False)["input_ids"]
    keep = [i for i, (t, n) in enumerate(zip(ids, lengths)) if len(t) >= n]
    if len(keep) < len(reviews):
        log.info(
            "%d reviews shorter than their drawn prompt length skipped", len(reviews) - len(keep)
        )
    bos = bos_ids(tok)
    prompt_ids = [bos + ids[i][: lengths[i]] for i in keep]
    return pd.DataFrame(
        {
            "prompt_id": np.arange(len(keep)),
            "review_id": reviews["review_id"].to_numpy()[keep],
            "prompt_ids": prompt_ids,
            "prompt": tok.batch_decode(prompt_ids, skip_special_tokens=True),
        }
    )


def main(argv=None):
    args = cli.parse(__doc__, ["reviews", "tokenizer"], ["out"], argv)
    p = read(Settings, args.params, "prompts")
    tok = load_tokenizer(args.tokenizer, "tokenizer")
    reviews = io.read_parquet(args.reviews, ["review_id", "text"])
    if len(reviews) == 0:
        raise ValueError(f"{args.reviews}: no reviews to make prompts from")
    table = make_prompts(reviews, tok, p.min_tokens, p.max_tokens, p.seed)
    io.write_parquet(table, args.out)
    log.info(
        "%d prompts, mean %.2f tokens -> %s",
        len(table),
        table["prompt_ids"].map(len).mean(),
        args.out,
    )


if __name__ == "__main__":
    cli.run(main)
