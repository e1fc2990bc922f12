"""The sampler against a bare decode loop of the same model, cache and batch, and before against
after: tokens per second of `pipeline.sampling.sample` (pure sampling), of the same loop with
`torch.multinomial` as its draw (the sampler before), and of a loop that takes the argmax and
nothing else (no warp, no draw: the most a sampler of this model can reach).

    python benchmarks/sampler.py --model results/pretrained/model --batch-sizes 48,64,128 \\
        --new-tokens 32 --json benchmarks/results/sampler-smollm2.json
    python benchmarks/sampler.py --model <default study>/results/sft/model \\
        --batch-sizes 64,128,256 --new-tokens 48 --json benchmarks/results/sampler-default.json

Every row generates exactly `--new-tokens` tokens (EOS is never taken as the end), from prompts of
8 random tokens. The three loops alternate, `--repeats` times each after one untimed warm-up, on
the threads torch is given (every core by default); the figure is the median.
"""

import argparse
import statistics
import time

import record
import torch

from pipeline import sampling
from pipeline.logprobs import left_pad
from pipeline.models import autocast, load_causal_lm, precision


def multinomial(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The draw before: an exponential variate for every vocabulary entry of every row."""
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def bare(model, prompts: list[list[int]], new: int, pad_id: int) -> None:
    """The decode loop with the sampler's padding, positions, mask and cache, and the argmax."""
    dev = next(model.parameters()).device
    start = left_pad(prompts, [[] for _ in prompts], pad_id).to(dev)
    ids, mask, pos, cache = start.input_ids, start.attention_mask, start.position_ids, None
    for _ in range(new):
        with autocast(dev):
            res = model(
                input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True
            )
        cache, ids = res.cache, res.logits[:, -1].argmax(-1, keepdim=True)
        mask = torch.cat([mask, torch.ones_like(ids)], dim=-1)
        pos = pos[:, -1:] + 1


def sampler(draw):
    def run(model, prompts, new, pad_id):
        sampling.categorical, kept = draw, sampling.categorical
        try:
            sampling.sample(model, prompts, new, -1, pad_id, torch.Generator().manual_seed(0))
        finally:
            sampling.categorical = kept

    return run


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="a causal LM folder")
    parser.add_argument("--batch-sizes", default="64,128")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    result = record.provenance() | {"args": vars(args)}
    model = load_causal_lm(args.model, "--model").eval()
    dev = next(model.parameters()).device
    result["precision"] = precision(dev)
    vocab, pad = model.get_output_embeddings().out_features, 0
    loops = {
        "bare": bare,
        "sampler": sampler(sampling.categorical),
        "multinomial": sampler(multinomial),
    }
    rows = []
    for batch in map(int, args.batch_sizes.split(",")):
        gen = torch.Generator().manual_seed(batch)
        prompts = torch.randint(1, vocab, (batch, 8), generator=gen).tolist()
        seconds = {name: [] for name in loops}
        for repeat in range(args.repeats + 1):
            for name, loop in loops.items():
                t0 = time.perf_counter()
                loop(model, prompts, args.new_tokens, pad)
                if repeat:  # the first round warms up
                    seconds[name].append(time.perf_counter() - t0)
        tokens = batch * args.new_tokens
        row = {"batch": batch} | {
            f"{name}_tokens_per_s": tokens / statistics.median(s) for name, s in seconds.items()
        }
        row["sampler_of_bare"] = row["sampler_tokens_per_s"] / row["bare_tokens_per_s"]
        row["multinomial_of_bare"] = row["multinomial_tokens_per_s"] / row["bare_tokens_per_s"]
        rows.append(row)
        print(
            f"batch {batch:4d}: bare {row['bare_tokens_per_s']:8.0f} tokens/s, sampler"
            f" {row['sampler_tokens_per_s']:8.0f} ({row['sampler_of_bare']:.2f} of bare),"
            f" multinomial {row['multinomial_tokens_per_s']:8.0f}"
            f" ({row['multinomial_of_bare']:.2f})",
            flush=True,
        )
    record.write(result | {"rows": rows}, args.json)


if __name__ == "__main__":
    main()
