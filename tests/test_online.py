"""The online objectives on a rollout built by hand: which sample of a group wins, and what each
group's loss is."""

import math
from types import SimpleNamespace as NS

import torch

from pipeline.losses import dpo_loss
from pipeline.steps import GRPO, ONLINE_DPO, RLOO

t = torch.tensor


def rollout(scores):
    n = len(scores)
    logps = -torch.arange(1, 2 * n + 1, dtype=torch.float32).view(n, 2) / 4  # two tokens each
    return {
        "scores": t(scores, dtype=torch.float64),
        "old": logps,
        "ref": logps - 0.1,
        "mask": torch.ones(n, 2, dtype=torch.bool),
    }, logps


def test_online_dpo_takes_each_pairs_winner_and_learns_nothing_from_a_tie():
    r, logps = rollout([0.2, 0.9, 0.5, 0.5])
    p = NS(own={"beta": 0.5})
    r |= ONLINE_DPO.targets(r, p, 2)
    loss = ONLINE_DPO.loss(logps, r, torch.arange(4), p, 2)
    seq, ref = logps.sum(-1), r["ref"].sum(-1)
    expected = dpo_loss(seq[1], seq[0], ref[1], ref[0], 0.5)  # sample 1 (0.9) beats sample 0
    torch.testing.assert_close(loss, torch.stack([expected, t(0.0)]))


def test_grpo_and_rloo_give_one_loss_per_group_from_their_advantages():
    r, logps = rollout([0.0, 1.0, 0.5, 0.5])
    p = NS(own={"beta": 0.0}, cliprange=0.2)
    grpo = r | GRPO.targets(r, p, 2)
    # group 0: (r - 0.5) / (std + 1e-4), the unbiased std of [0, 1] being sqrt(0.5); group 1: 0
    a = 0.5 / (math.sqrt(0.5) + 1e-4)
    torch.testing.assert_close(grpo["advantages"], t([-a, a, 0.0, 0.0]))
    torch.testing.assert_close(GRPO.loss(logps, grpo, torch.arange(4), p, 2), t([0.0, 0.0]))
    rloo = r | RLOO.targets(r, p, 2)
    torch.testing.assert_close(rloo["advantages"], t([-1.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(RLOO.loss(logps, rloo, torch.arange(4), p, 2), t([0.0, 0.0]))
