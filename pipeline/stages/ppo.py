"""Stage `train_ppo`: PPO against the ground-truth reward ("PPO-GT" in the DPO paper), or, for the
RLHF route (`ppo_rm`), against the learned reward model ("PPO" in the paper's figure 2).

Each iteration: draw `rollout_size` training prompts, sample one completion each from the current
policy (pure sampling), score prompt + completion with the classifier, and form the per-token
reward r_t = -kl_coef (log pi - log pi_ref) plus the score on the last token. GAE gives advantages
(whitened) and returns for a value head on the policy's last hidden state; then `ppo_epochs`
passes of minibatches optimise the clipped policy loss + vf_coef * the clipped value loss.
The KL coefficient is adaptive (Ziegler et al. 2019, towards `target_kl`) or fixed.
Under torchrun, data-parallel: each process samples, scores and evaluates its share of the
rollout, every process then holds the whole of it, and each takes its share of every minibatch,
its loss weighted by its share of the minibatch's tokens; the gradient is the one-process one.
"""

import pandas as pd
import torch

from pipeline import cli
from pipeline.checkpoint import Checkpoint
from pipeline.config import given, record
from pipeline.distributed import SINGLE, World, setup, wrap
from pipeline.logprobs import token_logprobs
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
from pipeline.losses import (
    gae,
    kl_penalised_rewards,
    masked_mean,
    ppo_policy_loss,
    ppo_value_loss,
    whiten,
)
from pipeline.models import autocast, device, train_mode
from pipeline.paths import policy_id
from pipeline.rewards import make_scorer
from pipeline.rollout import (
    PolicyWithValue,
    Section,
    collect,
    policy_and_reference,
    training_prompts,
)
from pipeline.settings import read

log = get_logger("train_ppo")


@record
class Settings(Section):
    """The `train_ppo` rule's settings: config section `ppo` (for ppo_rm, `ppo` with its own
    target_kl), sample.batch_size, sample.max_new_tokens and the reward."""

    target_kl: float = given("this job's value of the method's swept target_kl")


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """The entropy of each position's next-token distribution, from its log-probs."""
    return -(logp.exp() * logp).sum(-1)


class AdaptiveKLController:
    """Ziegler et al. 2019, eq. 2: beta <- beta * (1 + K_beta * e_t), with the proportional error
    e_t = clip(KL_t / KL_target - 1, -0.2, 0.2) and K_beta = n_samples / horizon."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, kl: float, n_samples: int) -> None:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_samples / self.horizon


class FixedKLController:
    """A constant KL coefficient beta."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, kl: float, n_samples: int) -> None:
        pass


def kl_controller(p: Settings):
    if p.adaptive_kl:
        return AdaptiveKLController(p.init_kl_coef, p.target_kl, p.horizon)
    return FixedKLController(p.init_kl_coef)


def train(
    model: PolicyWithValue,
    ref,
    tok,
    prompts: list[list[int]],
    scorer,
    p: Settings,
    ckpt: Checkpoint | None = None,
    world: World = SINGLE,
    tracker: Tracker | None = None,
    points: Trajectory | None = None,
) -> pd.DataFrame:
    """Train in place; with `ckpt`, resume from its last checkpoint and write one every
    `ckpt.every` iterations (the main process writes it); with `points`, save the policy at its
    fractions of the run."""
    dev = next(model.parameters()).device
    gen, sample_gen, _ = generators(p.seed, world, dev)  # prompts and minibatches; rollouts
    opt = make_optimizer(trainable(model), p.optimizer, p.lr)
    kl_ctl = kl_controller(p)
    # dropout off: the ratio pi / pi_old must compare the same function
    train_mode(model.policy, p.gradient_checkpointing, dropout=False)
    if points is not None:
        points.plan(p.iterations, model.policy, tok)
    run = Run(p.method, p.iterations, model, opt, ckpt, world, tracker, "iter", points)
    step = 0  # optimizer steps, for the warm-up
    if run.restored:
        step, kl_ctl.value = run.restored["step"], run.restored["kl_coef"]
        gen.set_state(run.restored["gen"])
        sample_gen.set_state(run.restored["sample_gen"][world.rank])
    ddp = wrap(model, world, p.compile)

    def own_state():
        return {
            "step": step,
            "kl_coef": kl_ctl.value,
            "gen": gen.get_state(),
            "sample_gen": world.gather(sample_gen.get_state()),
        }  # each process draws its own

    while run.done < p.iterations:
        it = run.done
        idx = torch.randint(len(prompts), (p.rollout_size,), generator=gen)
        world.micro_batches(idx, None, "ppo.rollout_size")  # refuses a share that does not split
        batch, score, old_logps, ref_logps, values = collect(
            model, ref, tok, [prompts[i] for i in idx.tolist()], scorer, p, sample_gen, world
        )
        mask = batch.response_mask
        rewards = kl_penalised_rewards(old_logps, ref_logps, mask, score.float(), kl_ctl.value)
        advantages, returns = gae(rewards, values, mask, p.gamma, p.lam)
        advantages = whiten(advantages, mask)
        kl = (old_logps - ref_logps).sum(-1).mean().item()
        stats = []
        for _ in range(p.ppo_epochs):
            for mb in torch.randperm(p.rollout_size, generator=gen).split(p.minibatch_size):
                [share] = world.micro_batches(mb.to(dev), None, "ppo.minibatch_size")
                sub = batch.select(share)
                set_lr(opt, warmup_constant(step, p.warmup_steps, p.lr))
                with autocast(dev):
                    new_logprobs, new_values = ddp(sub)
                logps = token_logprobs(new_logprobs, sub)
                m = mask[share]
                pg_loss, clipfrac = ppo_policy_loss(
                    logps, old_logps[share], advantages[share], m, p.cliprange
                )
                vf_loss = ppo_value_loss(
                    new_values, values[share], returns[share], m, p.cliprange_value
                )
                loss = pg_loss + p.vf_coef * vf_loss
                tokens = m.sum()
                with torch.no_grad():  # token-weighted means over the whole minibatch
                    row = (
                        torch.stack(
                            [
                                loss,
                                pg_loss,
                                vf_loss,
                                clipfrac,
                                masked_mean(entropy(new_logprobs), m),
                            ]
                        ).float()
                        * tokens
                    )
                    row = world.sum(torch.cat([row, tokens.float().view(1)]))
                    row = row[:-1] / row[-1]
                # this share's tokens over the minibatch's, times the processes DDP averages
                # over: exactly 1 in one process
                weight = tokens * world.size / mask[mb.to(dev)].sum()
                opt.zero_grad(set_to_none=True)
                (loss * weight).backward()
                # the minibatch's loss, the same in every process: all stop together
                run.update(
                    row[0],
                    p.max_grad_norm,
                    f"iteration {it}, rollout rows {mb[:4].tolist()}...",
                    step,
                )
                step += 1
                stats.append(row[1:].tolist())
        kl_coef = kl_ctl.value
        kl_ctl.update(kl, p.rollout_size)
        pg, vf, cf, ent = torch.tensor(stats).mean(0).tolist()
        run.done += 1
        run.log(
            {
                "iteration": it,
                "reward": score.mean().item(),
                "kl": kl,
                "kl_coef": kl_coef,
                "entropy": ent,
                "clipfrac": cf,
                "value_loss": vf,
                "policy_loss": pg,
                "response_length": mask.sum(-1).float().mean().item(),
            },
            postfix="reward",
        )
        run.end_step(own_state)
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
    p = read(Settings, args.params, "train_ppo")
    torch.manual_seed(p.seed)
    prompts = training_prompts(args.prompts)
    world = setup()
    tok, policy, ref = policy_and_reference(args.policy, p.lora)
    model = PolicyWithValue(policy).to(device())
    name = policy_id(p.method, p.target_kl, p.seed)
    job = start_job(args, p, world, name, "ppo", args.prompts, args.policy, p.reward_model)
    scorer = make_scorer(p.reward, p.reward_model)
    metrics = train(model, ref, tok, prompts, scorer, p, job.ckpt, world, job.tracker, job.points)
    if not finish_job(job, model.policy, tok, metrics, args):
        return
    log.info(
        "%s: reward %.3f -> %.3f, KL %.2f, kl_coef %.3f after %d iterations (%.1f s)",
        p.method,
        metrics["reward"].iloc[0],
        metrics["reward"].iloc[-1],
        metrics["kl"].iloc[-1],
        metrics["kl_coef"].iloc[-1],
        len(metrics),
        metrics["seconds"].iloc[-1],
    )


if __name__ == "__main__":
    cli.run(main)
