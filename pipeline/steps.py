"""What one training step computes for a method, below the trainers that run it: the pairwise
trainer's feed of a pure loss (`loss_step`) and the steps of the pairwise methods that need more
than log-probs (Plackett-Luce, Cringe, KTO), and the online methods' objectives (GRPO, RLOO,
online DPO). The method catalogue names them as "pipeline.steps:<name>" (pipeline.methods), so
that a stage without torch reads the catalogue without importing them.
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pipeline.logprobs import forward_logits, forward_logprobs, next_token_logprobs, token_logprobs
from pipeline.losses import (
    ce_loss,
    cringe_gate,
    cringe_token_loss,
    dpo_loss,
    group_advantages,
    grpo_loss,
    kl_penalised_scores,
    kto_loss,
    kto_reference_point,
    leave_one_out_advantages,
    pairwise_cringe_loss,
    plackett_luce_loss,
    rloo_loss,
)

# --- the pairwise methods (pipeline.stages.preference) ---------------------------------------


# A step gets the distinct responses' batch and the index (K, n) of each row's responses in it
# (pipeline.batching.response_batch); it returns per-row losses and per-row statistics,
# which the trainer sums and averages.
def sequence_logps(model, batch, index):
    """log pi(y|x) of each row's response in each column: (K, n)."""
    return token_logprobs(forward_logprobs(model, batch), batch).sum(-1)[index]


# What a pure pairwise loss may ask for by the name of an argument; any other name is a setting.
TENSORS = {f"{kind}_{side}" for side in ("chosen", "rejected") for kind in ("policy", "ref")} | {
    f"{side}_{kind}"
    for side in ("chosen", "rejected")
    for kind in ("length", "token_logps", "mask")
}


def loss_step(loss):
    """The step of a method given by a pure loss: the batch's log-probs, pi_ref's and the lengths
    passed to it by its arguments' names, its settings from the method's section. Logged: the
    implicit reward margin (log-ratio margin, times beta where the loss has one; without a
    reference, the log-prob margin) and how often it is positive."""
    wanted = list(inspect.signature(loss).parameters)

    def step(model, batch, index, ref, own, generator, chunk=None):
        token_logps = token_logprobs(forward_logprobs(model, batch), batch)
        lengths = batch.response_mask.sum(-1).to(token_logps.dtype)
        sides = ["chosen", "rejected"][: len(index)]
        tensors = {}
        for side, rows in zip(sides, index):
            tensors |= {
                f"policy_{side}": token_logps.sum(-1)[rows],
                f"{side}_length": lengths[rows],
                f"{side}_token_logps": token_logps[rows],
                f"{side}_mask": batch.response_mask[rows],
            }
        if ref is not None:
            tensors |= dict(zip([f"ref_{side}" for side in sides], ref))
        out = loss(**{n: tensors[n] if n in tensors else own[n] for n in wanted})
        if len(sides) == 1:
            return out, {}
        chosen, rejected = tensors["policy_chosen"].detach(), tensors["policy_rejected"].detach()
        if ref is not None:  # the implicit rewards, beta (log pi - log ref)
            scale = own["beta"] if "beta" in wanted else 1.0
            chosen, rejected = scale * (chosen - ref[0]), scale * (rejected - ref[1])
            stats = (
                {"reward_chosen": chosen, "reward_rejected": rejected} if "beta" in wanted else {}
            )
        else:
            stats = {}
        margin = chosen - rejected
        return out, stats | {"reward_accuracy": (margin > 0).float(), "reward_margin": margin}

    return step


def plackett_luce_step(model, batch, index, ref, own, generator, chunk=None):
    """The listwise DPO loss on each prompt's K responses, ranked best first (ref: K x B)."""
    logps = sequence_logps(model, batch, index).T
    loss = plackett_luce_loss(logps, ref.T, own["beta"])
    margin = (logps - ref.T)[:, :-1] - (logps - ref.T)[:, 1:]  # adjacent ranks' log-ratio margins
    return loss, {
        "reward_accuracy": (margin > 0).float().mean(-1).detach(),
        "reward_margin": margin.mean(-1).detach(),
    }


def cringe_step(model, batch, index, ref, own, generator, chunk=None):
    chosen, rejected = index
    logits = forward_logits(model, batch)
    token_logps = token_logprobs(next_token_logprobs(logits), batch)
    logps = token_logps.sum(-1)
    gate = cringe_gate(logps[chosen], logps[rejected], own["b"], own["tau"])
    ce = ce_loss(token_logps[chosen])
    # each pair draws its own positive tokens, also where pairs share their rejected response
    cr = cringe_token_loss(
        logits[rejected, :-1],
        batch.input_ids[rejected, 1:],
        batch.response_mask[rejected],
        own["k"],
        generator,
    )
    loss = pairwise_cringe_loss(gate, ce, cr, own["gate_ce"])
    margin = (logps[chosen] - logps[rejected]).detach()
    return loss, {
        "gate": gate.detach(),
        "ce": ce.detach(),
        "cringe": cr.detach(),
        "reward_accuracy": (margin > 0).float(),
        "reward_margin": margin,
    }


def kto_step(model, batch, index, ref, own, generator, chunk):
    """KTO on unpaired samples: each row's completion (index[0]), desirable or not
    (`chunk.desirable`), and beside it another prompt's response (index[1]), whose log-ratio
    estimates the reference point z0 over the (micro-)batch."""
    logps = sequence_logps(model, batch, index)
    desirable = torch.as_tensor(chunk["desirable"].to_numpy(), device=logps.device)
    z0 = kto_reference_point(logps[1], ref[1])
    loss = kto_loss(
        logps[0],
        ref[0],
        desirable,
        z0,
        own["beta"],
        own["desirable_weight"],
        own["undesirable_weight"],
    )
    reward = own["beta"] * (logps[0] - ref[0]).detach()
    return loss, {
        "reward": reward,
        "kl_reference_point": z0.expand_as(reward),
        "desirable_share": desirable.float(),
    }


# --- the online methods (pipeline.stages.online) ---------------------------------------------


@dataclass(frozen=True)
class Objective:
    """What an online method learns from a rollout of groups of G samples per prompt (G: the
    record's group_size). `targets(rollout, p, G)` runs once per rollout (advantages, pairs);
    `loss(logps, rollout, rows, p, G)` gives one loss per group of the minibatch `rows` (sequence
    indices, whole groups) from the policy's token log-probs `logps` of those rows. `settings`:
    the keys of the method's section it reads from `p.own`."""

    targets: Callable
    loss: Callable
    settings: tuple[str, ...] = ("beta",)


def grpo_targets(r, p, G):
    return {"advantages": group_advantages(r["scores"].float(), G)}


def grpo_group_loss(logps, r, rows, p, G):
    per_sample = grpo_loss(
        logps,
        r["old"][rows],
        r["ref"][rows],
        r["advantages"][rows],
        r["mask"][rows],
        p.own["beta"],
        p.cliprange,
    )
    return per_sample.view(-1, G).mean(-1)


def rloo_targets(r, p, G):
    rewards = kl_penalised_scores(r["scores"].float(), r["old"], r["ref"], p.own["beta"])
    return {"advantages": leave_one_out_advantages(rewards, G)}


def rloo_group_loss(logps, r, rows, p, G):
    per_sample = rloo_loss(
        logps.sum(-1), r["old"][rows].sum(-1), r["advantages"][rows], p.cliprange
    )
    return per_sample.view(-1, G).mean(-1)


def online_dpo_targets(r, p, G):
    """Each pair's winner first: `order` indexes (winner, loser) within each group of 2."""
    scores = r["scores"].view(-1, 2)
    first_wins = scores[:, 0] >= scores[:, 1]
    order = torch.stack([torch.where(first_wins, 0, 1), torch.where(first_wins, 1, 0)], -1)
    # stored per sample as the other targets are: a group's two entries are (winner, loser)
    return {
        "order": order.view(-1),
        "decided": (scores[:, 0] != scores[:, 1]).repeat_interleave(2).float(),
    }


def online_dpo_group_loss(logps, r, rows, p, G):
    """DPO on each group's (winner, loser); a tied pair's loss is multiplied by 0."""
    seq = logps.sum(-1).view(-1, 2)
    ref = r["ref"][rows].sum(-1).view(-1, 2)
    order = r["order"][rows].view(-1, 2)
    pick = seq.gather(-1, order), ref.gather(-1, order)
    loss = dpo_loss(pick[0][:, 0], pick[0][:, 1], pick[1][:, 0], pick[1][:, 1], p.own["beta"])
    return loss * r["decided"][rows].view(-1, 2)[:, 0]


GRPO = Objective(grpo_targets, grpo_group_loss)
RLOO = Objective(rloo_targets, rloo_group_loss)
ONLINE_DPO = Objective(online_dpo_targets, online_dpo_group_loss)
