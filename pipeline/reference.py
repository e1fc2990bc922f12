"""Stage `reference`: log pi_ref(y|x) of every response of the pairs (or rankings), computed once.

DPO needs these for every pair at every step; caching them per pairs file means a beta sweep
does not recompute them (and pi_ref never has to sit in memory beside the policy). Each response
column `<name>_ids` of the input (chosen_ids, rejected_ids; or rank0_ids, rank1_ids, ...) gives a
column `ref_<name>`, row-aligned with the input.
"""

import pandas as pd
import torch

from pipeline import cli, io
from pipeline.logprobs import left_pad, response_logprobs
from pipeline.logs import get_logger, progress
from pipeline.models import autocast, device, load_causal_lm, load_tokenizer

log = get_logger("reference")

PAIR_COLUMNS = ["prompt_ids", "chosen_ids", "rejected_ids"]


def response_columns(table: pd.DataFrame) -> list[str]:
    """The response columns of a pairs (chosen, rejected) or rankings (rank0, rank1, ...) table."""
    return [c for c in table.columns if c.endswith("_ids") and c != "prompt_ids"]


def reference_column(response: str) -> str:
    return "ref_" + response.removesuffix("_ids")


@torch.no_grad()
def reference_logps(model, pairs: pd.DataFrame, pad_id: int, batch_size: int) -> pd.DataFrame:
    dev = next(model.parameters()).device
    out = {c: [] for c in response_columns(pairs)}
    for start in progress(range(0, len(pairs), batch_size), desc="reference", unit="batch"):
        chunk = pairs.iloc[start:start + batch_size]
        prompts = [list(p) for p in chunk["prompt_ids"]]
        for column in out:
            batch = left_pad(prompts, [list(r) for r in chunk[column]], pad_id).to(dev)
            with autocast(dev):
                out[column].append(response_logprobs(model, batch).double().cpu())
    return pd.DataFrame({reference_column(c): torch.cat(v).numpy() for c, v in out.items()})


def main(argv=None):
    args = cli.parse(__doc__, ["pairs", "policy"], ["out"], argv)
    pairs = io.read_parquet(args.pairs, ["prompt_ids"])
    if pairs.empty:
        raise ValueError(f"{args.pairs}: the file holds no pairs or rankings")
    if not response_columns(pairs):
        raise ValueError(f"{args.pairs}: no response columns (chosen_ids, rejected_ids or rank<k>_ids)")
    tok = load_tokenizer(args.policy, "policy")
    model = load_causal_lm(args.policy, "policy").to(device()).eval()
    table = reference_logps(model, pairs, tok.pad_token_id, args.params["batch_size"])
    io.write_parquet(table, args.out)
    log.info("reference log-probs of %d rows, mean %s -> %s", len(table),
             ", ".join(f"{c} {table[c].mean():.2f}" for c in table.columns), args.out)


if __name__ == "__main__":
    cli.run(main)
