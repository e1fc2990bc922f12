"""Stage `train_online`: GRPO, RLOO and online DPO on the true reward, from the policy's own
samples.

Each iteration draws `ppo.rollout_size / G` training prompts and samples G completions of each
from the current policy with PPO's rollout (pipeline.rollout.collect: pure sampling, the true
reward, the policy's and pi_ref's token log-probs), then makes `ppo.ppo_epochs` passes over it in
minibatches of `ppo.minibatch_size` samples (whole groups). What is learned from a group is the
method's (its record names the objective below):
- GRPO: G = sample.n_per_prompt; group-normalised advantages on every token, the clipped
  per-token ratio, and beta times the k3 estimate of KL(pi || pi_ref) as a loss term;
- RLOO: G = sample.n_per_prompt; the reward minus beta times the sequence log-ratio (the KL folded
  into the reward), leave-one-out advantages, the clipped sequence ratio;
- online DPO: G = 2 (Guo et al. 2024), the higher-scoring sample chosen (a tie teaches nothing),
  the DPO loss with pi_ref's log-probs, every iteration on fresh pairs.
No value head. The optimiser, iterations and batch sizes are the ppo section's, so the online
methods see as many samples per iteration as PPO. Dropout is off: the ratios compare one function.
"""

import pandas as pd
import torch

from pipeline import cli
from pipeline.checkpoint import Checkpoint
from pipeline.config import borrow, record
from pipeline.distributed import SINGLE, setup, wrap
from pipeline.logprobs import forward_logprobs, token_logprobs
from pipeline.logs import get_logger
from pipeline.loop import (
    Run,
    Tracker,
    Trajectory,
    finish_job,
    generators,
    make_optimizer,
    set_lr,
    start_job,
    warmup_constant,
)
from pipeline.lora import trainable
from pipeline.methods import method, resolve
from pipeline.models import autocast, train_mode
from pipeline.paths import policy_id
from pipeline.rewards import make_scorer
from pipeline.rollout import Section, collect, policy_and_reference, training_prompts
from pipeline.settings import read, rest
from pipeline.steps import Objective

log = get_logger("train_online")


@record
class Settings(Section):
    """The `train_online` rule's settings: the ppo section's (pipeline.rollout.Section), the
    method's own and the groups' size."""

    # G, the samples of a group, unless the record fixes it
    n_per_prompt: borrow("sample.n_per_prompt")
    # the method's own settings, which its objective reads by name: the built-ins' beta (the
    # weight of the KL to pi_ref for GRPO and RLOO, DPO's beta for online DPO), an extension's own
    own: dict = rest()


def check_settings(objective: Objective, p: Settings) -> None:
    """Refuse, before the first iteration, a section without a key the objective reads, or with
    one it does not."""
    missing = sorted(set(objective.settings) - set(p.own))
    unread = sorted(set(p.own) - set(objective.settings))
    if missing or unread:
        raise ValueError(
            f"{p.method}: its objective reads {list(objective.settings)} from its section;"
            f" missing {missing}, not read {unread}"
        )


def train(
    model,
    ref,
    tok,
    prompts: list[list[int]],
    scorer,
    p: Settings,
    ckpt: Checkpoint | None = None,
    tracker: Tracker | None = None,
    points: Trajectory | None = None,
) -> pd.DataFrame:
    """Train in place, one process; with `ckpt`, resume from its last checkpoint; with `points`,
    save the policy at its fractions of the run."""
    record = method(p.method)
    objective, G = resolve(record.step), record.group_size or p.n_per_prompt
    check_settings(objective, p)
    dev = next(model.parameters()).device
    gen, sample_gen, _ = generators(p.seed, device=dev)  # prompts and minibatches; rollouts
    opt = make_optimizer(trainable(model), p.optimizer, p.lr)
    train_mode(model, p.gradient_checkpointing, dropout=False)
    if points is not None:
        points.plan(p.iterations, model, tok)
    run = Run(p.method, p.iterations, model, opt, ckpt, tracker=tracker, unit="iter", points=points)
    step = 0  # optimizer steps, for the warm-up
    if run.restored:
        step = run.restored["step"]
        gen.set_state(run.restored["gen"])
        sample_gen.set_state(run.restored["sample_gen"])
    ddp = wrap(model, SINGLE, p.compile)
    groups, per_minibatch = p.rollout_size // G, max(1, p.minibatch_size // G)
    while run.done < p.iterations:
        it = run.done
        idx = torch.randint(len(prompts), (groups,), generator=gen)
        batch, scores, old, ref_logps, _ = collect(
            model,
            ref,
            tok,
            [prompts[i] for i in idx.tolist() for _ in range(G)],
            scorer,
            p,
            sample_gen,
        )
        r = {"scores": scores, "old": old, "ref": ref_logps, "mask": batch.response_mask}
        r |= objective.targets(r, p, G)
        losses = []
        for _ in range(p.ppo_epochs):
            for mb in torch.randperm(groups, generator=gen).split(per_minibatch):
                rows = (mb.to(dev)[:, None] * G + torch.arange(G, device=dev)).view(-1)
                sub = batch.select(rows)
                set_lr(opt, warmup_constant(step, p.warmup_steps, p.lr))
                with autocast(dev):
                    logps = token_logprobs(forward_logprobs(ddp, sub), sub)
                loss = objective.loss(logps, r, rows, p, G).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                batch_name = f"iteration {it}, groups {mb[:4].tolist()}..."
                run.update(loss.detach(), p.max_grad_norm, batch_name, step)
                step += 1
                losses.append(loss.item())
        run.done += 1
        run.log(
            {
                "iteration": it,
                "reward": scores.mean().item(),
                "kl": (old - ref_logps).sum(-1).mean().item(),
                "loss": sum(losses) / len(losses),
                "response_length": batch.response_mask.sum(-1).float().mean().item(),
            },
            postfix="reward",
        )
        run.end_step(
            lambda: {"step": step, "gen": gen.get_state(), "sample_gen": sample_gen.get_state()}
        )
    run.close()
    return pd.DataFrame(run.metrics)


def main(argv=None):
    args = cli.parse(
        __doc__,
        ["prompts", "policy", "checkpoint"],
        ["model", "metrics", "trajectory"],
        argv,
        optional=("checkpoint", "trajectory"),
    )
    p = read(Settings, args.params, "train_online")
    torch.manual_seed(p.seed)
    prompts = training_prompts(args.prompts)
    world = setup()
    if world.size > 1:
        raise ValueError(f"{p.method} runs in one process: set resources.data_parallel to 1")
    tok, model, ref = policy_and_reference(args.policy, p.lora)
    name = policy_id(p.method, p.own[method(p.method).swept], p.seed)
    job = start_job(args, p, world, name, "ppo", args.prompts, args.policy, p.reward_model)
    scorer = make_scorer(p.reward, p.reward_model)
    metrics = train(model, ref, tok, prompts, scorer, p, job.ckpt, job.tracker, job.points)
    finish_job(job, model, tok, metrics, args)
    log.info(
        "%s: reward %.3f -> %.3f, KL %.2f after %d iterations (%.1f s)",
        p.method,
        metrics["reward"].iloc[0],
        metrics["reward"].iloc[-1],
        metrics["kl"].iloc[-1],
        len(metrics),
        metrics["seconds"].iloc[-1],
    )


if __name__ == "__main__":
    cli.run(main)
