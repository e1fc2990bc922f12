"""Stage `reference`: log pi_ref(y|x) of every response of the pairs (or rankings), computed once.

DPO needs these for every pair at every step; caching them per pairs file means a beta sweep
does not recompute them (and pi_ref never has to sit in memory beside the policy). Each response
column `<name>_ids` of the input (chosen_ids, rejected_ids; or rank0_ids, rank1_ids, ...) gives a
column `ref_<name>`, row-aligned with the input. A prompt's 6 pairs hold its 4 samples: each
distinct (prompt, response) is run once, `batch_size` sequences at a time, longest first.
"""

import pandas as pd
import torch

from pipeline import cli, io
from pipeline.batching import distinct_responses, reference_column, response_columns
from pipeline.config import Reference as Settings
from pipeline.logprobs import left_pad, response_logprobs
from pipeline.logs import get_logger, progress
from pipeline.models import autocast, device, load_causal_lm
from pipeline.safe_loading import load_tokenizer
from pipeline.settings import read

log = get_logger("reference")


@torch.no_grad()
def reference_logps(model, pairs: pd.DataFrame, pad_id: int, batch_size: int) -> pd.DataFrame:
    dev = next(model.parameters()).device
    columns = response_columns(pairs)
    prompts, responses, index = distinct_responses(pairs, columns)
    # longest first: each batch then pads its sequences to nearly their own length
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]) - len(responses[i]))
    logps = torch.empty(len(prompts), dtype=torch.float64)
    for start in progress(range(0, len(order), batch_size), desc="reference", unit="batch"):
        rows = order[start : start + batch_size]
        batch = left_pad([prompts[i] for i in rows], [responses[i] for i in rows], pad_id).to(dev)
        with autocast(dev):
            logps[rows] = response_logprobs(model, batch).double().cpu()
    log.info(
        "%d distinct sequences for %d rows x %d responses", len(prompts), len(pairs), len(columns)
    )
    return pd.DataFrame(
        {reference_column(c): logps[index[j]].numpy() for j, c in enumerate(columns)}
    )


def main(argv=None):
    args = cli.parse(__doc__, ["pairs", "policy"], ["out"], argv)
    p = read(Settings, args.params, "reference")
    pairs = io.read_parquet(args.pairs, ["prompt_ids"])
    if pairs.empty:
        raise ValueError(f"{args.pairs}: the file holds no pairs or rankings")
    if not response_columns(pairs):
        raise ValueError(
            f"{args.pairs}: no response columns (chosen_ids, rejected_ids or rank<k>_ids)"
        )
    tok = load_tokenizer(args.policy, "policy")
    model = load_causal_lm(args.policy, "policy").to(device()).eval()
    table = reference_logps(model, pairs, tok.pad_token_id, p.batch_size)
    io.write_parquet(table, args.out)
    log.info(
        "reference log-probs of %d rows, mean %s -> %s",
        len(table),
        ", ".join(f"{c} {table[c].mean():.2f}" for c in table.columns),
        args.out,
    )


if __name__ == "__main__":
    cli.run(main)
