"""Stage `train_ppo`: PPO against the ground-truth reward ("PPO-GT" in the DPO paper), or, for the
RLHF route (`ppo_rm`), against the learned reward model ("PPO" in the paper's figure 2).

Each iteration: draw `rollout_size` training prompts, sample one completion each from the current
policy (pure sampling), score prompt + completion with the classifier, and form the per-token
reward r_t = -kl_coef (log pi - log pi_ref) plus the score on the last token. GAE gives advantages
(whitened) and returns for a value head on the policy's last hidden state; then `ppo_epochs`
passes of minibatches optimise the clipped policy loss + vf_coef * the clipped value loss.
The KL coefficient is adaptive (Ziegler et al. 2019, towards `target_kl`) or fixed.
"""

import time

import pandas as pd
import torch

from pipeline import cli, io
from pipeline.checkpoint import Checkpoint, fingerprint
from pipeline.logprobs import forward_logits, left_pad, token_logprobs
from pipeline.logs import get_logger, progress
from pipeline.losses import (AdaptiveKLController, FixedKLController, gae, kl_penalised_rewards,
                             masked_mean, ppo_policy_loss, ppo_value_loss, whiten)
from pipeline.models import autocast, device, load_causal_lm, load_tokenizer, train_mode
from pipeline.optim import check_finite, make_optimizer, set_lr, warmup_constant
from pipeline.rollout import rollout
from pipeline.score import make_scorer

log = get_logger("train_ppo")


class PolicyWithValue(torch.nn.Module):
    """The policy plus a scalar value head reading its last hidden state."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy
        self.value_head = torch.nn.Linear(policy.config.hidden_size, 1)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)

    def forward(self, batch):
        out = self.policy(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                          position_ids=batch.position_ids, use_cache=False, output_hidden_states=True)
        values = self.value_head(out.hidden_states[-1][:, :-1].float()).squeeze(-1)
        return out.logits[:, :-1].float(), values


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1)


@torch.no_grad()
def score_rollout(model: PolicyWithValue, ref, batch, chunk: int):
    """Token log-probs under the rollout policy and pi_ref, and values, `chunk` rows at a time
    (a whole rollout's logits over a 50k vocabulary would not fit in memory at paper scale)."""
    dev = batch.input_ids.device
    out = []
    for rows in torch.arange(len(batch.input_ids), device=dev).split(chunk):
        sub = batch.select(rows)
        with autocast(dev):
            logits, values = model(sub)
            ref_logits = forward_logits(ref, sub)
        out.append((token_logprobs(logits, sub), token_logprobs(ref_logits, sub), values))
    return tuple(torch.cat(parts) for parts in zip(*out))


def kl_controller(p: dict):
    if p["adaptive_kl"]:
        return AdaptiveKLController(p["init_kl_coef"], p["target_kl"], p["horizon"])
    return FixedKLController(p["init_kl_coef"])


def train(model: PolicyWithValue, ref, tok, prompts: list[list[int]], scorer, p: dict,
          ckpt: Checkpoint | None = None) -> pd.DataFrame:
    """Train in place; with `ckpt`, resume from its last checkpoint and write one every
    `ckpt.every` iterations."""
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(p["seed"])
    sample_gen = torch.Generator(device=dev).manual_seed(p["seed"])
    opt = make_optimizer(model.parameters(), p["optimizer"], p["lr"])
    kl_ctl = kl_controller(p)
    # dropout off: the ratio pi / pi_old must compare the same function
    train_mode(model.policy, p["gradient_checkpointing"], dropout=False)
    state = ckpt.restore(model, opt) if ckpt else None
    if state is None:
        metrics, start, step = [], 0, 0
    else:
        metrics, start, step = state["metrics"], state["iteration"], state["step"]
        kl_ctl.value = state["kl_coef"]
        gen.set_state(state["gen"])
        sample_gen.set_state(state["sample_gen"])
        log.info("resuming from the checkpoint at iteration %d", start)
    t0 = time.perf_counter() - (metrics[-1]["seconds"] if metrics else 0.0)
    for it in progress(range(start, p["iterations"]), desc="ppo", unit="iter", initial=start,
                       total=p["iterations"]):
        idx = torch.randint(len(prompts), (p["rollout_size"],), generator=gen).tolist()
        batch_prompts = [prompts[i] for i in idx]
        completions, scores = rollout(model.policy, tok, batch_prompts, scorer, p["max_new_tokens"],
                                      sample_gen)
        batch = left_pad(batch_prompts, completions, tok.pad_token_id).to(dev)
        mask = batch.response_mask
        old_logps, ref_logps, values = score_rollout(model, ref, batch, p["minibatch_size"])
        score = torch.tensor(scores, dtype=torch.float32, device=dev)
        rewards = kl_penalised_rewards(old_logps, ref_logps, mask, score, kl_ctl.value)
        advantages, returns = gae(rewards, values, mask, p["gamma"], p["lam"])
        advantages = whiten(advantages, mask)
        kl = (old_logps - ref_logps).sum(-1).mean().item()
        stats = []
        for _ in range(p["ppo_epochs"]):
            for mb in torch.randperm(p["rollout_size"], generator=gen).split(p["minibatch_size"]):
                mb_dev = mb.to(dev)
                sub = batch.select(mb_dev)
                set_lr(opt, warmup_constant(step, p["warmup_steps"], p["lr"]))
                with autocast(dev):
                    new_logits, new_values = model(sub)
                logps = token_logprobs(new_logits, sub)
                m = mask[mb_dev]
                pg_loss, clipfrac = ppo_policy_loss(logps, old_logps[mb_dev], advantages[mb_dev], m,
                                                    p["cliprange"])
                vf_loss = ppo_value_loss(new_values, values[mb_dev], returns[mb_dev], m,
                                         p["cliprange_value"])
                loss = pg_loss + p["vf_coef"] * vf_loss
                check_finite(loss, "ppo", step, f"iteration {it}, rollout rows {mb[:4].tolist()}...")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), p["max_grad_norm"])
                opt.step()
                step += 1
                with torch.no_grad():
                    stats.append([pg_loss.item(), vf_loss.item(), clipfrac.item(),
                                  masked_mean(entropy(new_logits), m).item()])
        kl_coef = kl_ctl.value
        kl_ctl.update(kl, p["rollout_size"])
        pg, vf, cf, ent = torch.tensor(stats).mean(0).tolist()
        metrics.append({"iteration": it, "reward": float(scores.mean()), "kl": kl,
                        "kl_coef": kl_coef, "entropy": ent, "clipfrac": cf, "value_loss": vf,
                        "policy_loss": pg, "response_length": mask.sum(-1).float().mean().item(),
                        "seconds": time.perf_counter() - t0})
        if ckpt is not None and ckpt.due(it + 1) and it + 1 < p["iterations"]:
            ckpt.save(model, opt, {"iteration": it + 1, "step": step, "metrics": metrics,
                                   "kl_coef": kl_ctl.value, "gen": gen.get_state(),
                                   "sample_gen": sample_gen.get_state()})
    return pd.DataFrame(metrics)


def main(argv=None):
    args = cli.parse(__doc__, ["prompts", "policy", "checkpoint"], ["model", "metrics"], argv,
                     optional=("checkpoint",))
    p = args.params
    torch.manual_seed(p["seed"])
    dev = device()
    tok = load_tokenizer(args.policy, "policy")
    policy = load_causal_lm(args.policy, "policy")
    ref = load_causal_lm(args.policy, "policy").to(dev).eval().requires_grad_(False)
    model = PolicyWithValue(policy).to(dev)
    prompts = [list(x) for x in io.read_parquet(args.prompts, ["prompt_ids"])["prompt_ids"]]
    if not prompts:
        raise ValueError(f"{args.prompts}: no training prompts")
    learned = p["reward"]["model"] if p["reward"]["backend"] == "reward_model" else None
    ckpt = Checkpoint(args.checkpoint, p["checkpoint_every"],
                      fingerprint(p, args.prompts, args.policy, learned))
    metrics = train(model, ref, tok, prompts, make_scorer(p["reward"]), p, ckpt)
    with io.atomic_output(args.model) as tmp:
        model.policy.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    io.write_csv(metrics, args.metrics)
    ckpt.clear()
    log.info("ppo: reward %.3f -> %.3f, KL %.2f, kl_coef %.3f after %d iterations (%.1f s)",
             metrics["reward"].iloc[0], metrics["reward"].iloc[-1], metrics["kl"].iloc[-1],
             metrics["kl_coef"].iloc[-1], len(metrics), metrics["seconds"].iloc[-1])


if __name__ == "__main__":
    cli.run(main)
