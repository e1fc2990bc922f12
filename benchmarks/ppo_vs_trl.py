"""PPO rollouts per second: our trainer (pipeline/stages/ppo.py) against TRL 1.12.0's PPOTrainer,
side by side, on the same policy, prompts and reward, runs alternating (ours, TRL, ours, TRL, ...).

TRL 1.12.0 is the last release with PPO (`trl.experimental.ppo`). Its pins accept this project's
torch and transformers, but it is kept out of the shared environment, in a virtual environment
that sees the project's packages and adds TRL and accelerate:

    python -m venv --system-site-packages /work/venvs/trl112
    /work/venvs/trl112/bin/pip install trl==1.12.0
    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 /work/venvs/trl112/bin/python benchmarks/ppo_vs_trl.py \\
        --policy results/sft/model --prompts results/prompts/train.parquet \\
        --json benchmarks/results/ppo-vs-trl.json

Needs the embedded default's SFT policy and training prompts (`snakemake --cores 8` first).
Both sides, alike:
- the policy pi_ref (the SFT model) and pi_ref as the frozen reference;
- the reward: a fixed classifier, pi_ref's trunk with a seeded random scalar head read at the last
  real token (pipeline.classifiers.RewardModel). Ours scores text through the pipeline's own
  RewardModelScorer (decode, re-tokenise, forward), as every scorer of ours does; TRL reads the
  same trunk and head from the token ids, as its PPOTrainer does. Only its cost matters here;
- `rollout_size` rollouts per iteration, `max_new_tokens` of pure sampling (temperature 1, top_k 0),
  stopping at EOS; `ppo_epochs` passes of `rollout_size / minibatch_size` minibatches, one
  optimiser step each (TRL: per_device_train_batch_size = rollout_size, num_mini_batches,
  gradient_accumulation_steps 1); a fixed KL coefficient; AdamW; fp32; `--threads` threads.
Differences that stay, being each trainer's design: TRL trains a separate value network (a copy
of the trunk with a scalar head), ours a value head on the policy's trunk; TRL evaluates the
rollout in `local_rollout_forward_batch_size` rows (set to the rollout), ours in minibatches;
ours clips the gradient norm, TRL's PPO loop does not.
Timed: `trainer.train()` and our `train()`, not the construction of either. Each run's time is
split into phases by wrapping the functions each trainer calls: generation (TRL:
batch_generation; ours: sample), reward (TRL: get_reward on the reward model; ours: the rest of
the rollout, decoding and scoring text), evaluation (log-probs, pi_ref's log-probs, values without
gradients) and the update (the rest: advantages and the PPO epochs).
"""

import pipeline  # noqa: F401, I001 - first: it sets the OpenMP wait policy torch reads at import
import argparse
import copy
import logging
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

import pandas as pd
import torch

import record
from pipeline import rollout
from pipeline.stages import ppo
from pipeline.models import load_causal_lm
from pipeline.safe_loading import load_tokenizer
from pipeline.classifiers import RewardModel, save_reward_model
from pipeline.classifiers import RewardModelScorer
from pipeline.settings import read

PHASES = ("generation", "reward", "evaluation", "update")


def ppo_params(
    iterations: int,
    rollout_size: int = 64,
    minibatch_size: int = 16,
    ppo_epochs: int = 4,
    max_new_tokens: int = 48,
    adaptive_kl: bool = True,
) -> dict:
    """The embedded default's PPO section (config.yaml), as train_ppo receives it."""
    return {
        "method": "ppo",
        "target_kl": 6.0,
        "adaptive_kl": adaptive_kl,
        "init_kl_coef": 0.05,
        "horizon": 256,
        "iterations": iterations,
        "rollout_size": rollout_size,
        "minibatch_size": minibatch_size,
        "ppo_epochs": ppo_epochs,
        "optimizer": "adamw",
        "lr": 2e-4,
        "warmup_steps": 5,
        "cliprange": 0.2,
        "cliprange_value": 0.2,
        "vf_coef": 0.1,
        "gamma": 1.0,
        "lam": 0.95,
        "max_grad_norm": 1.0,
        "gradient_checkpointing": False,
        "compile": False,
        "seed": 0,
        "max_new_tokens": max_new_tokens,
        "sample_batch_size": 256,
        "checkpoint_every": 0,
        "reward": {"backend": "vader", "model": None, "batch_size": 64, "max_length": 512},
        "extensions": [],
        "tracking": "none",
        "tracking_dir": "results/tracking",
    }


@contextmanager
def timing(module, name: str, phases: dict, phase, when=lambda *a, **k: True):
    """Replace module.name by a wrapper adding its seconds to phases[phase(...)] while inside."""
    original = getattr(module, name)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            if when(*args, **kwargs):
                phases[phase(*args, **kwargs) if callable(phase) else phase] += (
                    time.perf_counter() - t0
                )

    setattr(module, name, timed)
    try:
        yield
    finally:
        setattr(module, name, original)


def split_phases(total: float, phases: dict) -> dict:
    """Seconds per phase; the update is what the timed phases leave of the run."""
    out = {k: phases.get(k, 0.0) for k in PHASES[:-1]}
    out["update"] = total - sum(out.values())
    return out


def run_ours(policy, tok, prompts, reward_folder, p, args) -> tuple[float, dict]:
    model = ppo.PolicyWithValue(copy.deepcopy(policy))
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    scorer = RewardModelScorer(
        reward_folder, batch_size=p["sample_batch_size"], max_length=args.max_length
    )
    phases = defaultdict(float)
    with (
        timing(rollout, "sample", phases, "generation"),
        timing(ppo, "rollout", phases, "reward"),
        timing(ppo, "score_rollout", phases, "evaluation"),
    ):
        t0 = time.perf_counter()
        ppo.train(model, ref, tok, prompts, scorer, read(ppo.Settings, p, "train_ppo"))
        total = time.perf_counter() - t0
    phases["reward"] -= phases["generation"]  # the rollout less its sampling: decode and score
    return total, split_phases(total, phases)


class TRLReward(torch.nn.Module):
    """The same reward model, shaped as TRL's get_reward reads one: a backbone under
    `base_model_prefix` returning hidden states, and a `score` head on every position."""

    base_model_prefix = "trunk"

    def __init__(self, reward: RewardModel):
        super().__init__()
        self.trunk = reward.trunk
        self.reward = reward

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        r = self.reward.head(hidden.float())
        return (r - self.reward.reward_mean) / self.reward.reward_std


def run_trl(policy, tok, prompts, reward: RewardModel, p, args) -> tuple[float, dict]:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, PrinterCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer, ppo_trainer

    config = PPOConfig(
        output_dir="/tmp/trl_ppo_bench",
        total_episodes=p["iterations"] * p["rollout_size"],
        per_device_train_batch_size=p["rollout_size"],
        gradient_accumulation_steps=1,
        num_mini_batches=p["rollout_size"] // p["minibatch_size"],
        num_ppo_epochs=p["ppo_epochs"],
        local_rollout_forward_batch_size=p["rollout_size"],
        response_length=p["max_new_tokens"],
        stop_token="eos",
        temperature=1.0,
        kl_coef=p["init_kl_coef"],
        cliprange=p["cliprange"],
        cliprange_value=p["cliprange_value"],
        vf_coef=p["vf_coef"],
        gamma=p["gamma"],
        lam=p["lam"],
        learning_rate=p["lr"],
        optim="adamw_torch",
        num_sample_generations=0,
        report_to=[],
        save_strategy="no",
        logging_steps=10**9,
        use_cpu=True,
        bf16=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=p["seed"],
    )
    value_model = AutoModelForSequenceClassification.from_pretrained(args.policy, num_labels=1)
    trainer = PPOTrainer(
        args=config,
        processing_class=tok,
        model=copy.deepcopy(policy).train(),
        ref_model=copy.deepcopy(policy).eval(),
        reward_model=TRLReward(copy.deepcopy(reward)),
        value_model=value_model,
        train_dataset=Dataset.from_dict({"input_ids": prompts}),
        eval_dataset=Dataset.from_dict({"input_ids": prompts[: p["rollout_size"]]}),
    )
    trainer.remove_callback(PrinterCallback)  # a printed dict per iteration
    reward_model = trainer.reward_model
    phases = defaultdict(float)
    no_grad = lambda *a, **k: not torch.is_grad_enabled()  # noqa: E731 - the rollout's calls
    with (
        timing(ppo_trainer, "batch_generation", phases, "generation"),
        timing(
            ppo_trainer,
            "get_reward",
            phases,
            lambda m, *a, **k: "reward" if m is reward_model else "evaluation",
        ),
        timing(ppo_trainer, "forward", phases, "evaluation", when=no_grad),
    ):
        t0 = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - t0
    return total, split_phases(total, phases)


def spread(xs: list[float]) -> dict:
    return {
        "median": statistics.median(xs),
        "min": min(xs),
        "max": max(xs),
        "mean": statistics.fmean(xs),
        "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
        "runs": xs,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="results/sft/model")
    ap.add_argument("--prompts", default="results/prompts/train.parquet")
    ap.add_argument("--iterations", type=int, default=5, help="PPO iterations per run")
    ap.add_argument("--pairs", type=int, default=4, help="alternating (ours, TRL) pairs of runs")
    ap.add_argument("--rollout-size", type=int, default=64)
    ap.add_argument("--minibatch-size", type=int, default=16)
    ap.add_argument("--ppo-epochs", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--max-length", type=int, default=512, help="the scorer's truncation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    info = record.provenance()
    import trl

    logging.getLogger("accelerate").setLevel(logging.WARNING)  # a line per gathered tensor

    torch.manual_seed(0)
    tok = load_tokenizer(args.policy, "policy")
    policy = load_causal_lm(args.policy, "policy")
    prompts = [list(x) for x in pd.read_parquet(args.prompts, columns=["prompt_ids"])["prompt_ids"]]
    reward = RewardModel(copy.deepcopy(policy).base_model)
    torch.nn.init.normal_(reward.head.weight, std=reward.trunk.config.hidden_size**-0.5)
    reward.eval().requires_grad_(False)
    reward_folder = "/tmp/ppo_vs_trl_reward"
    save_reward_model(reward, tok, reward_folder)
    p = ppo_params(
        args.iterations,
        args.rollout_size,
        args.minibatch_size,
        args.ppo_epochs,
        args.max_new_tokens,
        adaptive_kl=False,
    )
    rollouts = p["iterations"] * p["rollout_size"]
    print(
        f"{len(prompts)} prompts; {args.iterations} iterations of {p['rollout_size']} rollouts x "
        f"{p['max_new_tokens']} tokens, {p['ppo_epochs']} epochs of minibatches of "
        f"{p['minibatch_size']}; {sum(x.numel() for x in policy.parameters()) / 1e6:.2f}M "
        f"parameters, fp32, {torch.get_num_threads()} threads; TRL {trl.__version__}; "
        f"{info['uptime_before']}"
    )
    runs = {"ours": [], "trl": []}
    for i in range(args.pairs):
        for side, run in (("ours", run_ours), ("trl", run_trl)):
            torch.manual_seed(i)
            arg = reward_folder if side == "ours" else reward
            total, phases = run(policy, tok, prompts, arg, p, args)
            runs[side].append(
                {"seconds": total, "rollouts_per_s": rollouts / total, "phases_s": phases}
            )
            print(
                f"pair {i} {side:4s}: {rollouts / total:6.1f} rollouts/s ({total:.1f} s: "
                + ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
                + ")"
            )
    ratios = [o["rollouts_per_s"] / t["rollouts_per_s"] for o, t in zip(runs["ours"], runs["trl"])]
    result = info | {
        "args": vars(args),
        "trl": trl.__version__,
        "params": p,
        "runs": runs,
        "rollouts_per_s": {s: spread([r["rollouts_per_s"] for r in runs[s]]) for s in runs},
        "phases_s_median": {
            s: {k: statistics.median(r["phases_s"][k] for r in runs[s]) for k in PHASES}
            for s in runs
        },
        "ratio_ours_over_trl": spread(ratios),
    }
    r = result["ratio_ours_over_trl"]
    print(
        f"ours {result['rollouts_per_s']['ours']['median']:.1f} rollouts/s, TRL "
        f"{result['rollouts_per_s']['trl']['median']:.1f} (medians); ratio ours / TRL "
        f"{r['median']:.2f} (pairs: {r['min']:.2f}-{r['max']:.2f}, mean {r['mean']:.2f} "
        f"+- {r['sd']:.2f})"
    )
    for s in runs:
        print(
            f"  {s:4s} median s per run: "
            + ", ".join(f"{k} {v:.2f}" for k, v in result["phases_s_median"][s].items())
        )
    if args.json:
        record.write(result, args.json)


if __name__ == "__main__":
    main()
