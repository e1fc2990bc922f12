"""Time one DPO epoch of our trainer against TRL's DPOTrainer, same model, pairs and batch size.

Needs the embedded default's artifacts (run `snakemake --cores 8` first) and TRL, an optional
benchmark dependency:  pip install -e ".[bench]"
    python benchmarks/dpo_vs_trl.py [--pairs results/pairs.parquet] [--policy results/sft/model]

Ours: pi_ref's log-probs are computed once (the `reference` rule), then one epoch of the
preference trainer with reward monitoring off. TRL: `trainer.train()` for one epoch, once with a
reference model evaluated every step (its default) and once with `precompute_ref_log_probs`.
TRL tokenises the dataset and precomputes reference log-probs in its constructor, which is not
timed; so two ratios are printed: ours with the reference pass against TRL's default, and our
epoch alone against TRL's epoch with precomputed log-probs. Both in fp32 on the same threads.
Also prints PPO's rollout-and-update throughput in samples per second (TRL's PPOTrainer, side by
side: benchmarks/ppo_vs_trl.py).
"""

import pipeline  # noqa: F401, I001 - first: it sets the OpenMP wait policy torch reads at import
import argparse
import copy
import time

import numpy as np
import pandas as pd
import torch

from pipeline.models import load_causal_lm
from pipeline.safe_loading import load_tokenizer
from pipeline.stages.ppo import PolicyWithValue
from pipeline.stages.ppo import Settings as PPOSettings
from pipeline.stages.ppo import train as train_ppo
from pipeline.stages.preference import Settings as PairwiseSettings
from pipeline.stages.preference import train as train_pairwise
from pipeline.stages.reference import reference_logps
from pipeline.settings import read
from ppo_vs_trl import ppo_params
from throughput import TRAINER_UNTIMED


class NoReward:
    def __call__(self, texts):
        return np.zeros(len(texts))


def ours(policy, tok, pairs, args) -> tuple[float, float]:
    model = copy.deepcopy(policy)
    t0 = time.perf_counter()
    ref = reference_logps(policy.eval(), pairs, tok.pad_token_id, args.batch_size)
    t1 = time.perf_counter()
    p = TRAINER_UNTIMED | {
        "method": "dpo",
        "beta": 0.1,
        "optimizer": "adamw",
        "lr": args.lr,
        "batch_size": args.batch_size,
        "epochs": 1,
        "warmup_steps": 10,
        "max_grad_norm": 10.0,
        "micro_batch_size": None,
        "gradient_checkpointing": False,
        "compile": False,
        "seed": 0,
        "reward_prompts": 0,
        "reward_every": 10**9,
        "max_new_tokens": 1,
        "batch_order": "pair",
    }  # TRL shuffles pairs and runs each pair's two sequences
    train_pairwise(model, tok, pairs, ref, read(PairwiseSettings, p, "dpo"), NoReward())
    return t1 - t0, time.perf_counter() - t1


def trl(policy, tok, pairs, args, precompute: bool) -> float:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    def text(col):
        return tok.batch_decode([list(x) for x in pairs[col]])

    data = Dataset.from_dict(
        {
            "prompt": text("prompt_ids"),
            "chosen": text("chosen_ids"),
            "rejected": text("rejected_ids"),
        }
    )
    config = DPOConfig(
        output_dir="/tmp/trl_dpo_bench",
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=1,
        learning_rate=args.lr,
        beta=0.1,
        optim="adamw_torch",
        warmup_steps=10,
        max_grad_norm=10.0,
        lr_scheduler_type="constant_with_warmup",
        max_length=args.max_length,
        precompute_ref_log_probs=precompute,
        precompute_ref_batch_size=args.batch_size,
        report_to=[],
        save_strategy="no",
        logging_steps=10**9,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    trainer = DPOTrainer(
        model=copy.deepcopy(policy).train(),
        ref_model=copy.deepcopy(policy),
        args=config,
        train_dataset=data,
        processing_class=tok,
    )
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0


def ppo_samples_per_second(policy, tok, prompts, iterations=5) -> float:
    model = PolicyWithValue(copy.deepcopy(policy))
    p = ppo_params(iterations)
    from pipeline.rewards import VaderScorer

    t0 = time.perf_counter()
    settings = read(PPOSettings, p, "ppo")
    train_ppo(
        model, copy.deepcopy(policy).requires_grad_(False), tok, prompts, VaderScorer(), settings
    )
    return iterations * p["rollout_size"] / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="results/pairs.parquet")
    parser.add_argument("--policy", default="results/sft/model")
    parser.add_argument("--n-pairs", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args()

    torch.manual_seed(0)
    tok = load_tokenizer(args.policy, "policy")
    policy = load_causal_lm(args.policy, "policy")
    pairs = pd.read_parquet(args.pairs).head(args.n_pairs).reset_index(drop=True)
    print(
        f"{len(pairs)} pairs, batch {args.batch_size}, {torch.get_num_threads()} threads, "
        f"{sum(p.numel() for p in policy.parameters()) / 1e6:.2f}M parameters, "
        f"device {'cuda' if torch.cuda.is_available() else 'cpu'}"
    )
    ref_s, ours_s = ours(policy, tok, pairs, args)
    print(
        f"ours: reference log-probs {ref_s:.1f} s + one epoch {ours_s:.1f} s"
        f" = {ref_s + ours_s:.1f} s"
    )
    trl_s = trl(policy, tok, pairs, args, precompute=False)
    print(f"TRL DPOTrainer, reference model every step: {trl_s:.1f} s")
    trl_pre = trl(policy, tok, pairs, args, precompute=True)
    print(f"TRL DPOTrainer, precompute_ref_log_probs: {trl_pre:.1f} s")
    print(
        f"ratio ours / TRL: {(ref_s + ours_s) / trl_s:.2f} (ours incl. the reference pass vs TRL's"
        f" default), {ours_s / trl_pre:.2f} (epochs alone, reference log-probs precomputed)"
    )
    prompts = [list(x) for x in pairs.drop_duplicates("prompt_id")["prompt_ids"]]
    print(
        f"PPO: {ppo_samples_per_second(policy, tok, prompts):.1f} samples/s "
        "(rollout of 64 x 48 tokens, scoring, 4 epochs of updates)"
    )


if __name__ == "__main__":
    main()
