"""Stage `reward_model`: the learned reward r(x, y) of the RLHF route (the DPO paper's "PPO" with a
learned reward, the slides' "RL from Human Feedback approach").

The model is pi_ref's transformer trunk plus a scalar linear head reading the last hidden state at
the last position of a left-padded batch, that is at each sequence's last real token (position
ids come from the mask, so padding changes nothing; see pipeline/logprobs.py). It is trained on the
preference pairs with the Bradley-Terry loss

    L_R = -log sigmoid(r(x, y_w) - r(x, y_l)),

chosen and rejected sequences (prompt + response) in one forward pass. Choices:
- validation holds out a seeded fraction of the *prompts* (`holdout_fraction`), with all their
  pairs: a prompt's 6 pairs share its 4 responses, so a pair-level split would leak;
- the head starts at zero (every reward 0, loss log 2), as PPO's value head; dropout is off, so
  r is a fixed function during training;
- linear warmup then a constant learning rate, AdamW or RMSprop, gradient clipping.

Bradley-Terry fixes only reward differences, so r has no natural offset or scale. After training,
the mean and standard deviation of r over the training pairs' chosen and rejected sequences are
stored with the head (and in the summary), and the scorer (pipeline.classifiers.RewardModelScorer)
returns standardised rewards (r - mean) / std: PPO then sees a reward of known scale, of order one
like p(positive), whatever the training happened to do to the offset.
"""

import numpy as np
import pandas as pd
import torch

from pipeline import cli, config, io
from pipeline.batching import PAIR_COLUMNS, Epochs, pair_batch
from pipeline.checkpoint import Checkpoint, fingerprint
from pipeline.classifiers import RewardModel, save_reward_model
from pipeline.config import borrow, record
from pipeline.logs import get_logger
from pipeline.loop import (
    Run,
    Tracker,
    generators,
    make_optimizer,
    set_lr,
    tracker_for,
    warmup_constant,
)
from pipeline.losses import bradley_terry_loss
from pipeline.models import autocast, device, load_causal_lm, train_mode
from pipeline.safe_loading import load_tokenizer
from pipeline.settings import read

log = get_logger("reward_model")


@record
class Settings(config.RewardModel):
    """The `reward_model` rule's settings: config section `reward_model`, with the pairwise
    trainers' batch order."""

    batch_order: borrow("train.batch_order")
    tracking: borrow("train.tracking")
    tracking_dir: borrow("train.tracking_dir")


def split_by_prompt(pairs: pd.DataFrame, fraction: float, seed: int):
    """(train, validation): a seeded `fraction` of the prompts, with all their pairs, validates."""
    prompts = np.sort(pairs["prompt_id"].unique())
    n_val = round(fraction * len(prompts))
    if not 0 < n_val < len(prompts):
        raise ValueError(
            f"reward_model.holdout_fraction = {fraction} holds out {n_val} of"
            f" {len(prompts)} prompts; it must leave at least one training and one"
            " validation prompt"
        )
    held = np.random.default_rng(seed).permutation(prompts)[:n_val]
    is_val = pairs["prompt_id"].isin(held)
    return pairs[~is_val].reset_index(drop=True), pairs[is_val].reset_index(drop=True)


@torch.no_grad()
def pair_rewards(model: RewardModel, pairs: pd.DataFrame, pad_id: int, batch_size: int):
    """r(x, y_w) and r(x, y_l) of every pair, `batch_size` pairs at a time."""
    dev = next(model.parameters()).device
    chosen, rejected = [], []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs.iloc[start : start + batch_size]
        batch, index = pair_batch(chunk, pad_id)
        with autocast(dev):
            r = model(batch.to(dev)).cpu()[index]
        chosen.append(r[0])
        rejected.append(r[1])
    return torch.cat(chosen), torch.cat(rejected)


def pair_stats(chosen: torch.Tensor, rejected: torch.Tensor) -> dict:
    return {
        "accuracy": (chosen > rejected).float().mean().item(),
        "loss": bradley_terry_loss(chosen, rejected).mean().item(),
    }


def train(
    model: RewardModel,
    pairs: pd.DataFrame,
    pad_id: int,
    p: Settings,
    tracker: Tracker | None = None,
    ckpt: Checkpoint | None = None,
) -> pd.DataFrame:
    """Train in place on `pairs`; return the per-step metrics. With `ckpt`, resume from its last
    checkpoint and write one every `ckpt.every` steps."""
    dev = next(model.parameters()).device
    gen = generators(p.seed).order
    epochs = Epochs(pairs["prompt_id"], p.batch_order, p.batch_size, gen)
    total = epochs.steps * p.epochs
    opt = make_optimizer(model.parameters(), p.optimizer, p.lr)
    train_mode(model, gradient_checkpointing=False, dropout=False)
    run = Run("reward_model", total, model, opt, ckpt, tracker=tracker)
    if run.restored:
        epochs.restore(run.restored)
    while run.done < total:
        epoch, idx = epochs.rows(run.done)
        lr = warmup_constant(run.done, p.warmup_steps, p.lr)
        set_lr(opt, lr)
        batch, index = pair_batch(pairs.iloc[idx.numpy()], pad_id)
        with autocast(dev):
            chosen, rejected = model(batch.to(dev))[index.to(dev)]
        loss = bradley_terry_loss(chosen, rejected).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        run.update(loss.detach(), p.max_grad_norm, f"pairs {idx[:4].tolist()}... of epoch {epoch}")
        run.done += 1
        run.log(
            {
                "step": run.done,
                "epoch": epoch,
                "loss": loss.item(),
                "accuracy": (chosen > rejected).float().mean().item(),
                "margin": (chosen - rejected).mean().item(),
                "lr": lr,
            }
        )
        run.end_step(epochs.state)
    run.close()
    return pd.DataFrame(run.metrics)


def main(argv=None):
    args = cli.parse(
        __doc__,
        ["pairs", "policy", "checkpoint"],
        ["model", "metrics", "summary"],
        argv,
        optional=("checkpoint",),
    )
    p = read(Settings, args.params, "reward_model")
    pairs = io.read_parquet(args.pairs, PAIR_COLUMNS + ["prompt_id"])
    if pairs.empty:
        raise ValueError(f"{args.pairs}: the pairs file holds no pairs")
    train_pairs, val_pairs = split_by_prompt(pairs, p.holdout_fraction, p.seed)
    torch.manual_seed(p.seed)
    tok = load_tokenizer(args.policy, "policy")
    model = RewardModel(load_causal_lm(args.policy, "policy").base_model).to(device())
    log.info(
        "%d training pairs, %d validation pairs (%d held-out prompts)",
        len(train_pairs),
        len(val_pairs),
        val_pairs["prompt_id"].nunique(),
    )

    ckpt = Checkpoint(
        args.checkpoint, p.checkpoint_every, fingerprint(args.params, args.pairs, args.policy)
    )
    metrics = train(model, train_pairs, tok.pad_token_id, p, tracker_for(p, "reward_model"), ckpt)
    model.eval()
    chosen, rejected = pair_rewards(model, train_pairs, tok.pad_token_id, p.batch_size)
    rewards = torch.cat([chosen, rejected])
    model.reward_mean.fill_(rewards.mean().item())
    model.reward_std.fill_(rewards.std().item())
    if not model.reward_std.item() > 0:
        raise ValueError(
            "reward_model: every training sequence gets the same reward (std 0),"
            " so rewards cannot be standardised; raise lr or epochs"
        )
    train_stats = pair_stats(chosen, rejected)
    val_stats = pair_stats(*pair_rewards(model, val_pairs, tok.pad_token_id, p.batch_size))
    summary = {
        "train_pairs": len(train_pairs),
        "val_pairs": len(val_pairs),
        "train_prompts": int(train_pairs["prompt_id"].nunique()),
        "val_prompts": int(val_pairs["prompt_id"].nunique()),
        "train_accuracy": train_stats["accuracy"],
        "train_loss": train_stats["loss"],
        "val_accuracy": val_stats["accuracy"],
        "val_loss": val_stats["loss"],
        "reward_mean": model.reward_mean.item(),
        "reward_std": model.reward_std.item(),
        "steps": len(metrics),
        "seconds": metrics["seconds"].iloc[-1],
    }
    log.info(
        "reward model: validation accuracy %.3f (loss %.3f), training accuracy %.3f,"
        " after %d steps in %.1f s",
        summary["val_accuracy"],
        summary["val_loss"],
        summary["train_accuracy"],
        summary["steps"],
        summary["seconds"],
    )
    with io.atomic_output(args.model) as tmp:
        save_reward_model(model, tok, tmp)
    io.write_csv(metrics, args.metrics)
    io.write_json(summary, args.summary)
    ckpt.clear()


if __name__ == "__main__":
    cli.run(main)
