"""Tokens per second and model FLOPs utilisation (MFU) of the pipeline's own SFT step, DPO and
Cringe steps, sampling loop and PPO iteration, for a GPT-2 of a given size with random weights
(nothing is downloaded).

    python benchmarks/throughput.py --size tiny  # CPU: the embedded default's model
    python benchmarks/throughput.py --size gpt2-large --batch-size 64 --dpo-batch-size 64

Each phase calls the pipeline's code unchanged (sft.train, preference.train, sample.sample,
ppo.train), on whatever device pipeline.models.device() picks, in bf16 autocast on CUDA. Model
FLOPs per token follow PaLM (app. B): 6N + 12 L d T for a training token (forward and backward),
2N + 4 L d T for a forward-only token, with N the parameters less the position embeddings (the
tied input embedding counts once, as the output projection) and T the attention context. MFU
divides the achieved FLOP/s by the device's dense bf16 peak (known for A100, H100 and H200; else
--peak-tflops).
Then projects one run of each stage at the paper preset's sizes from the measured throughput, and
the hours of the preset's main table on the device.
"""

import argparse
import copy
import json
import time
from functools import partial
from itertools import combinations
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from pipeline.models import FAST_GELU, device
from pipeline.sampling import sample
from pipeline.settings import read
from pipeline.stages import ppo, preference, sft
from pipeline.stages.ppo import PolicyWithValue

# The fields of the stages' settings records that the timed functions do not read: the policy is
# built here (SIZES), and nothing is checkpointed, tracked or scored (NoReward)
SFT_UNTIMED = {
    "init": "scratch",
    "n_layer": 1,
    "n_embd": 8,
    "n_head": 1,
    "n_positions": 16,
    "vocab_size": 257,
    "max_length": 16,
    "holdout": 1,
    "allow_worse": False,
    "checkpoint_every": 0,
    "tracking": "none",
    "tracking_dir": "results/tracking",
}
TRAINER_UNTIMED = {
    "checkpoint_every": 0,
    "reward": {"backend": "vader", "model": None, "batch_size": 1, "max_length": 8},
    "extensions": [],
    "tracking": "none",
    "tracking_dir": "results/tracking",
}

SIZES = {  # n_layer, n_embd, n_head, vocab, positions
    "tiny": (2, 128, 4, 2048, 128),
    "gpt2": (12, 768, 12, 50257, 1024),
    "gpt2-medium": (24, 1024, 16, 50257, 1024),
    "gpt2-large": (36, 1280, 20, 50257, 1024),
    "gpt2-xl": (48, 1600, 25, 50257, 1024),
}
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0}


def peak_flops(dev, override):
    if override:
        return override * 1e12
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        for key, tflops in PEAK_BF16_TFLOPS.items():  # the more specific names first
            if key in name:
                return tflops * 1e12
    return None


def build(size: str, dev, vocab_multiple: int = 1) -> GPT2LMHeadModel:
    """With `vocab_multiple`, the embedding and LM head get rows up to the next multiple (the
    data never uses them): how much GPT-2's odd 50,257 costs the LM head's GEMM."""
    n_layer, n_embd, n_head, vocab, positions = SIZES[size]
    padded = -(-vocab // vocab_multiple) * vocab_multiple
    config = GPT2Config(
        vocab_size=padded,
        n_positions=positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function=FAST_GELU,
        bos_token_id=vocab - 1,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
    )
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).to(dev)


def vocab_of(model) -> int:
    """The real vocabulary: build() gives EOS the last real id; padding rows come after it."""
    return model.config.eos_token_id + 1


def flops_per_token(model, context: float, train: bool) -> float:
    """The useful FLOPs: padding rows of the vocabulary (`--vocab-multiple`) are not counted."""
    padding = model.config.vocab_size - vocab_of(model)
    n = (
        sum(p.numel() for p in model.parameters())
        - model.transformer.wpe.weight.numel()
        - padding * model.config.n_embd
    )
    L, d = model.config.n_layer, model.config.n_embd
    return (6 * n + 12 * L * d * context) if train else (2 * n + 4 * L * d * context)


def sample_flops(model, prompt: int, new: int) -> float:
    """One sequence: the prompt's forward pass, then `new` tokens decoded with a KV cache."""
    return prompt * flops_per_token(model, prompt / 2, train=False) + new * flops_per_token(
        model, prompt + new / 2, train=False
    )


def ppo_flops(model, prompt: int, new: int, ppo_epochs: int) -> float:
    """One rollout sample: sampling it, the policy's and pi_ref's forward passes over it (log-probs
    and values), then `ppo_epochs` training passes."""
    T = prompt + new
    return (
        sample_flops(model, prompt, new)
        + 2 * T * flops_per_token(model, T, train=False)
        + ppo_epochs * T * flops_per_token(model, T, train=True)
    )


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def memory_gib(dev) -> float | None:
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None


def reset_memory(dev):
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def timed_steps(metrics: pd.DataFrame, warmup: int) -> tuple[float, int]:
    """Seconds and steps after the first `warmup` steps (allocator and kernel warm-up)."""
    seconds = metrics["seconds"].dropna().to_numpy()
    return float(seconds[-1] - seconds[warmup - 1]), len(seconds) - warmup


def bench_sft(model, args, rng, dev) -> dict:
    vocab, T = vocab_of(model), args.seq_len
    steps = args.warmup + args.steps
    ids = [rng.integers(0, vocab - 1, T).tolist() for _ in range(steps * args.batch_size)]
    p = SFT_UNTIMED | {
        "batch_size": args.batch_size,
        "micro_batch_size": args.micro_batch_size,
        "epochs": 1,
        "lr": 1e-5,
        "weight_decay": 0.0,
        "warmup_steps": 1,
        "max_grad_norm": 1.0,
        "seed": 0,
        "gradient_checkpointing": args.gradient_checkpointing,
        "compile": args.compile,
    }
    reset_memory(dev)
    metrics = sft.train(model, ids, vocab - 1, read(sft.Settings, p, "sft"), dev)
    seconds, n = timed_steps(metrics, args.warmup)
    tokens = n * args.batch_size * T
    return {
        "tokens_per_s": tokens / seconds,
        "flops_per_s": tokens * flops_per_token(model, T, train=True) / seconds,
        "step_s": seconds / n,
        "peak_memory_gib": memory_gib(dev),
    }


class NoReward:
    def __call__(self, texts):
        return np.zeros(len(texts))


def bench_pairwise(model, args, rng, dev, method: str) -> dict:
    """DPO's or Cringe's step on pairs as the pipeline makes them: each prompt's 4 samples in 6
    pairs, a prompt's pairs batched together, so a step runs each distinct response once."""
    vocab, prompt, response = vocab_of(model), 8, args.dpo_len - 8
    n = (args.warmup + args.steps) * args.dpo_batch_size
    rows = []
    for prompt_id in range(-(-n // 6)):
        prompt_ids = rng.integers(0, vocab - 1, prompt).tolist()
        samples = [rng.integers(0, vocab - 1, response).tolist() for _ in range(4)]
        rows += [
            {
                "prompt_id": prompt_id,
                "prompt_ids": prompt_ids,
                "chosen_ids": samples[a],
                "rejected_ids": samples[b],
            }
            for a, b in combinations(range(4), 2)
        ]
    pairs = pd.DataFrame(rows[:n])
    ref = pd.DataFrame({"ref_chosen": np.full(n, -100.0), "ref_rejected": np.full(n, -100.0)})
    own = {"dpo": {"beta": 0.1}, "cringe": {"b": 0.0, "tau": 1.0, "k": 5, "gate_ce": True}}
    p = (
        TRAINER_UNTIMED
        | own[method]
        | {
            "method": method,
            "optimizer": "rmsprop",
            "lr": 1e-6,
            "batch_size": args.dpo_batch_size,
            "micro_batch_size": args.dpo_micro_batch_size,
            "epochs": 1,
            "warmup_steps": 1,
            "max_grad_norm": 10.0,
            "seed": 0,
            "gradient_checkpointing": args.gradient_checkpointing,
            "compile": args.compile,
            "reward_prompts": 0,
            "reward_every": 10**9,
            "max_new_tokens": 1,
            "batch_order": args.batch_order,
        }
    )
    reset_memory(dev)
    tok = SimpleNamespace(pad_token_id=vocab - 1)  # the trainer reads only the pad id here
    p = read(preference.Settings, p, "train_pairwise")
    metrics = preference.train(model, tok, pairs, ref, p, NoReward())
    seconds, steps = timed_steps(metrics.iloc[1:], args.warmup)  # row 0: the reward at step 0
    timed = metrics.iloc[1 + args.warmup :]
    # the sequences the steps ran: fewer than 2 per pair where pairs share responses
    tokens = float((timed["sequences_per_row"] * args.dpo_batch_size).sum()) * args.dpo_len
    pairs_per_s = steps * args.dpo_batch_size / seconds
    return {
        "tokens_per_s": tokens / seconds,
        "pairs_per_s": pairs_per_s,
        "sequences_per_pair": float(timed["sequences_per_row"].mean()),
        "flops_per_s": tokens * flops_per_token(model, args.dpo_len, train=True) / seconds,
        "step_s": seconds / steps,
        "peak_memory_gib": memory_gib(dev),
    }


def bench_ppo(model, args, rng, dev) -> dict:
    """Whole PPO iterations (rollout, pi_ref's and the policy's log-probs and values, then
    ppo_epochs passes of minibatches), the first one untimed."""
    vocab, prompt, new = vocab_of(model), 8, args.new_tokens
    prompts = [rng.integers(0, vocab - 1, prompt).tolist() for _ in range(args.ppo_rollout_size)]
    policy = PolicyWithValue(copy.deepcopy(model)).to(dev)
    ref = model.eval().requires_grad_(False)
    # eos -1 is never drawn: every completion has `new` tokens; the texts are never scored
    tok = SimpleNamespace(
        pad_token_id=vocab - 1, eos_token_id=-1, batch_decode=lambda ids, **_: [""] * len(ids)
    )
    p = TRAINER_UNTIMED | {
        "method": "ppo",
        "target_kl": 6.0,
        "adaptive_kl": True,
        "init_kl_coef": 0.2,
        "horizon": 10000,
        "iterations": 2,
        "rollout_size": args.ppo_rollout_size,
        "minibatch_size": args.ppo_minibatch_size,
        "ppo_epochs": 4,
        "optimizer": "adamw",
        "lr": 1.41e-5,
        "warmup_steps": 1,
        "cliprange": 0.2,
        "cliprange_value": 0.2,
        "vf_coef": 0.1,
        "gamma": 1.0,
        "lam": 0.95,
        "max_grad_norm": 1.0,
        "gradient_checkpointing": args.gradient_checkpointing,
        "compile": args.compile,
        "seed": 0,
        "max_new_tokens": new,
        "sample_batch_size": args.sample_batch_size,
    }
    reset_memory(dev)
    metrics = ppo.train(policy, ref, tok, prompts, NoReward(), read(ppo.Settings, p, "train_ppo"))
    seconds = float(metrics["seconds"].iloc[1] - metrics["seconds"].iloc[0])
    ref.train().requires_grad_(True)
    n = args.ppo_rollout_size
    flops = n * ppo_flops(model, prompt, new, p["ppo_epochs"])
    return {
        "tokens_per_s": n * new / seconds,
        "flops_per_s": flops / seconds,
        "iteration_s": seconds,
        "peak_memory_gib": memory_gib(dev),
    }


@torch.no_grad()
def bench_sample(model, args, rng, dev) -> dict:
    model.eval()
    vocab, prompt, new = vocab_of(model), 8, args.new_tokens
    prompts = [rng.integers(0, vocab - 1, prompt).tolist() for _ in range(args.sample_batch_size)]
    gen = torch.Generator(device=dev).manual_seed(0)
    reset_memory(dev)
    times = []
    for _ in range(args.warmup + 2):
        sync(dev)
        t0 = time.perf_counter()
        # eos_id -1 is never drawn: every row generates exactly `new` tokens
        sample(model, prompts, new, -1, vocab - 1, gen)
        sync(dev)
        times.append(time.perf_counter() - t0)
    seconds = float(np.mean(times[args.warmup :]))
    generated = args.sample_batch_size * new
    flops = args.sample_batch_size * sample_flops(model, prompt, new)
    return {
        "tokens_per_s": generated / seconds,
        "flops_per_s": flops / seconds,
        "batch_s": seconds,
        "peak_memory_gib": memory_gib(dev),
    }


# The main table of the paper preset (workflow/presets/paper.yaml), stage by stage: the work of one
# run in the unit of the phase's rate, and the runs (3 seeds of 4 DPO betas, 2 Cringe b's, 4 PPO
# targets). PPO's iteration time is taken as linear in the rollout size.
PRESET = [
    ("sft: 50,000 reviews x 128 tokens", "sft", 50_000 * 128, 1),
    ("sample: 25,000 prompts x 4 x 48 tokens", "sample", 25_000 * 4 * 48, 1),
    ("dpo: one epoch of 150,000 pairs", "dpo", 150_000, 12),
    ("cringe: one epoch of 150,000 pairs", "cringe", 150_000, 6),
    ("ppo: 25 iterations x 1,024 rollouts", "ppo", 25 * 1024, 12),
]


def seconds_per_unit(phase: str, r: dict, args) -> float:
    """Seconds per token (sft, sample), per pair (dpo, cringe) or per rollout sample (ppo)."""
    if phase in ("dpo", "cringe"):
        return 1 / r["pairs_per_s"]
    if phase == "ppo":
        return r["iteration_s"] / args["ppo_rollout_size"]
    return 1 / r["tokens_per_s"]


def project(results: dict) -> None:
    """Minutes per run at the paper's sizes, and the hours of the preset's main table on this
    device, from the measured rates (scoring, pi_ref's log-probs and evaluation not included)."""
    print("  projected at the paper preset's sizes, from the rates above:")
    total, missing = 0.0, []
    for label, phase, units, runs in PRESET:
        if phase not in results:
            missing.append(phase)
            continue
        minutes = units * seconds_per_unit(phase, results[phase], results["args"]) / 60
        results.setdefault("projected_minutes", {})[label] = minutes
        total += minutes * runs
        print(f"    {label:42s} {minutes:8.1f} min x {runs:2d} runs")
    if not missing:
        results["projected_main_table_hours"] = total / 60
        print(f"    the main table's training and sampling: {total / 60:.2f} hours on this device")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--seq-len", type=int, default=128, help="SFT tokens per review (paper: 128)")
    ap.add_argument("--batch-size", type=int, default=32, help="SFT batch (paper: 64)")
    ap.add_argument("--micro-batch-size", type=int, default=None)
    ap.add_argument("--dpo-len", type=int, default=56, help="prompt (8) + response tokens")
    ap.add_argument("--dpo-batch-size", type=int, default=32, help="pairs per step (paper: 64)")
    ap.add_argument("--dpo-micro-batch-size", type=int, default=None)
    ap.add_argument(
        "--batch-order",
        choices=["prompt", "pair"],
        default="prompt",
        help="DPO batches: a prompt's pairs together (the pipeline's default) or shuffled",
    )
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--sample-batch-size", type=int, default=256)
    ap.add_argument("--ppo-rollout-size", type=int, default=64, help="paper: 1024")
    ap.add_argument("--ppo-minibatch-size", type=int, default=16, help="paper: 64")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per training phase")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the trainers' forward pass (the stages' `compile: true`)",
    )
    ap.add_argument(
        "--vocab-multiple",
        type=int,
        default=1,
        help="pad the vocabulary to a multiple of this (64: 50,304 for GPT-2)",
    )
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak")
    ap.add_argument("--phases", default="sft,dpo,cringe,sample,ppo")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument("--profile", action="store_true", help="print each phase's top operators")
    args = ap.parse_args()

    dev = device()
    model = build(args.size, dev, args.vocab_multiple)
    peak = peak_flops(dev, args.peak_tflops)
    threads = f"CPU, {torch.get_num_threads()} threads"
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else threads
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"{args.size}: {n_params / 1e6:.1f}M parameters on {name}; "
        f"{'bf16 autocast' if dev.type == 'cuda' else 'fp32'}"
        f"{', gradient checkpointing' if args.gradient_checkpointing else ''}"
        f"{', compiled' if args.compile else ''}"
        + (f", vocabulary padded to {model.config.vocab_size:,}" if args.vocab_multiple > 1 else "")
    )
    rng = np.random.default_rng(0)
    phases = {
        "sft": bench_sft,
        "dpo": partial(bench_pairwise, method="dpo"),
        "cringe": partial(bench_pairwise, method="cringe"),
        "sample": bench_sample,
        "ppo": bench_ppo,
    }
    results = {"size": args.size, "parameters": n_params, "device": name, "args": vars(args)}
    for phase in args.phases.split(","):
        if args.profile:
            with torch.profiler.profile() as prof:
                r = phases[phase](model, args, rng, dev)
            sort = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
            print(prof.key_averages().table(sort_by=sort, row_limit=20, max_name_column_width=60))
        else:
            r = phases[phase](model, args, rng, dev)
        r["mfu"] = r["flops_per_s"] / peak if peak else None
        results[phase] = r
        mfu = f"{100 * r['mfu']:.1f}% MFU" if peak else "MFU n/a (no known peak; --peak-tflops)"
        mem = f", peak memory {r['peak_memory_gib']:.1f} GiB" if r["peak_memory_gib"] else ""
        extra = (
            f", {r['pairs_per_s']:,.0f} pairs/s ({r['sequences_per_pair']:.2f} sequences"
            " run per pair)"
            if phase in ("dpo", "cringe")
            else f", {r['iteration_s']:.2f} s per iteration"
            if phase == "ppo"
            else ""
        )
        print(
            f"  {phase:7s} {r['tokens_per_s']:>12,.0f} tokens/s  "
            f"{r['flops_per_s'] / 1e12:8.2f} TFLOP/s  {mfu}{mem}{extra}"
        )
        write_json(results, args.json)  # after every phase: a run cut short keeps what it measured
    project(results)
    write_json(results, args.json)


def write_json(results: dict, path: str | None) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
