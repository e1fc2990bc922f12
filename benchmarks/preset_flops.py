"""The model FLOPs of the paper preset's main table (workflow/presets/paper.yaml), counted as
benchmarks/throughput.py counts them, and the GPU time they take at a given MFU.

    python benchmarks/preset_flops.py                       # gpt2-large, 40% of an H100's peak

Nothing is run on a device: the model is built on the meta device. DPO's and Cringe's
sequences per pair are those of the preset's batch order (a prompt's pairs together, each
distinct response of a batch run once), counted by drawing one epoch of the preset's 25,000
prompts x 6 pairs with the trainer's own order and batching. Lengths are the preset's maxima
(SFT reviews of 128 tokens, prompts of 8, completions of 48), so the counts are upper bounds;
sampling is counted as FLOPs although it is bound by memory and overhead, and scoring and
evaluation are left out.
"""

import argparse
from itertools import combinations

import pandas as pd
import torch
from throughput import SIZES, build, flops_per_token, ppo_flops, sample_flops

from pipeline.batching import distinct_responses, epoch_order


def sequences_per_pair(n_prompts: int, batch_size: int, batch_order: str) -> float:
    """Distinct responses run per pair over one epoch, with 4 samples and 6 pairs per prompt."""
    pairs = pd.DataFrame(
        [
            {"prompt_id": i, "prompt_ids": [i], "chosen_ids": [a], "rejected_ids": [b]}
            for i in range(n_prompts)
            for a, b in combinations(range(4), 2)
        ]
    )
    order = epoch_order(pairs["prompt_id"], batch_order, torch.Generator().manual_seed(0))
    steps = len(pairs) // batch_size
    run = sum(
        len(
            distinct_responses(
                pairs.iloc[order[k * batch_size : (k + 1) * batch_size].numpy()],
                ["chosen_ids", "rejected_ids"],
            )[0]
        )
        for k in range(steps)
    )
    return run / (steps * batch_size)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="gpt2-large")
    ap.add_argument("--batch-order", choices=["prompt", "pair"], default="prompt")
    ap.add_argument("--mfu", type=float, default=0.4)
    ap.add_argument("--peak-tflops", type=float, default=989.4, help="dense bf16 (H100 SXM)")
    args = ap.parse_args()

    with torch.device("meta"):
        model = build(args.size, torch.device("meta"))
    prompts, pairs, prompt, new, pair_len = 25_000, 150_000, 8, 48, 56
    spp = sequences_per_pair(prompts, 64, args.batch_order)
    train, forward = (
        lambda T: flops_per_token(model, T, train=True),
        lambda T: flops_per_token(model, T, train=False),
    )
    stages = [  # (stage, runs, FLOPs of one run)
        ("sft: 50,000 reviews x 128 tokens", 1, 50_000 * 128 * train(128)),
        ("sample: 25,000 prompts x 4", 1, prompts * 4 * sample_flops(model, prompt, new)),
        (
            "reference: pi_ref on the pairs' responses",
            1,
            pairs * spp * pair_len * forward(pair_len),
        ),
        ("dpo: one epoch of 150,000 pairs", 12, pairs * spp * pair_len * train(pair_len)),
        ("cringe: one epoch of 150,000 pairs", 6, pairs * spp * pair_len * train(pair_len)),
        ("ppo: 25 iterations x 1,024 rollouts", 12, 25 * 1024 * ppo_flops(model, prompt, new, 4)),
    ]
    rate = args.mfu * args.peak_tflops * 1e12
    print(f"{args.size}, batch order '{args.batch_order}': {spp:.3f} sequences run per pair")
    total = 0.0
    for label, runs, flops in stages:
        total += runs * flops
        print(f"  {label:44s} {runs:2d} x {flops:.3e} FLOPs = {runs * flops / rate / 60:6.1f} min")
    print(
        f"  the main table: {total:.3e} FLOPs = {total / rate / 60:.1f} min at {args.mfu:.0%} of "
        f"{args.peak_tflops:g} TFLOP/s"
    )


if __name__ == "__main__":
    main()
