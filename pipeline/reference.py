"""Stage `reference`: log pi_ref(y|x) of every pair's chosen and rejected response, computed once.

DPO needs these for every pair at every step; caching them per pairs file means a beta sweep
does not recompute them (and pi_ref never has to sit in memory beside the policy).
"""

import pandas as pd
import torch

from pipeline import cli, io
from pipeline.logprobs import left_pad, response_logprobs
from pipeline.logs import get_logger, progress
from pipeline.models import autocast, device, load_causal_lm, load_tokenizer

log = get_logger("reference")

PAIR_COLUMNS = ["prompt_ids", "chosen_ids", "rejected_ids"]


@torch.no_grad()
def reference_logps(model, pairs: pd.DataFrame, pad_id: int, batch_size: int) -> pd.DataFrame:
    dev = next(model.parameters()).device
    out = {"ref_chosen": [], "ref_rejected": []}
    for start in progress(range(0, len(pairs), batch_size), desc="reference", unit="batch"):
        chunk = pairs.iloc[start:start + batch_size]
        prompts = [list(p) for p in chunk["prompt_ids"]]
        for side in ("chosen", "rejected"):
            batch = left_pad(prompts, [list(r) for r in chunk[f"{side}_ids"]], pad_id).to(dev)
            with autocast(dev):
                out[f"ref_{side}"].append(response_logprobs(model, batch).double().cpu())
    return pd.DataFrame({k: torch.cat(v).numpy() for k, v in out.items()})


def main(argv=None):
    args = cli.parse(__doc__, ["pairs", "policy"], ["out"], argv)
    pairs = io.read_parquet(args.pairs, PAIR_COLUMNS)
    if pairs.empty:
        raise ValueError(f"{args.pairs}: the pairs file holds no pairs")
    tok = load_tokenizer(args.policy, "policy")
    model = load_causal_lm(args.policy, "policy").to(device()).eval()
    table = reference_logps(model, pairs, tok.pad_token_id, args.params["batch_size"])
    io.write_parquet(table, args.out)
    log.info("reference log-probs of %d pairs: chosen %.2f, rejected %.2f (mean) -> %s",
             len(table), table["ref_chosen"].mean(), table["ref_rejected"].mean(), args.out)


if __name__ == "__main__":
    cli.run(main)
