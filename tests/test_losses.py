"""Every loss against values computed by hand on small tensors."""

import math

import pytest
import torch

from pipeline.losses import (
    bradley_terry_loss,
    ce_loss,
    conservative_dpo_loss,
    cringe_gate,
    cringe_token_loss,
    dpo_loss,
    gae,
    ipo_loss,
    kl_penalised_rewards,
    pairwise_cringe_loss,
    plackett_luce_loss,
    ppo_policy_loss,
    ppo_value_loss,
    unlikelihood_loss,
    whiten,
)
from pipeline.stages.ppo import AdaptiveKLController, FixedKLController

t = torch.tensor


def test_dpo_loss_by_hand():
    # log-ratios: chosen -1 - (-2) = 1, rejected -3 - (-2) = -1; beta * (1 - (-1)) = 1
    loss = dpo_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))


def test_dpo_loss_is_log2_at_the_reference():
    loss = dpo_loss(t([-4.0]), t([-7.0]), t([-4.0]), t([-7.0]), beta=3.0)
    assert loss.item() == pytest.approx(math.log(2))


def test_ce_loss_is_the_negative_sequence_logprob():
    assert ce_loss(t([[-0.5, -1.5, 0.0]])).item() == 2.0


def test_cringe_token_loss_k1_by_hand():
    # position 0: negative token 3 (logit 3); best other logit is 2 -> softplus(3 - 2)
    # position 1 is masked out and contributes nothing
    logits = t([[[2.0, 1.0, 0.5, 3.0], [9.0, 0.0, 0.0, 0.0]]])
    loss = cringe_token_loss(logits, t([[3, 1]]), t([[True, False]]), k=1)
    assert loss.item() == pytest.approx(math.log(1 + math.e))


def test_cringe_samples_the_positive_from_the_top_k_softmax():
    # k = 2 over the non-negative logits [2, 1]: s* = 2 w.p. e^2/(e^2+e^1) = 0.7311, else s* = 1
    n = 4000
    logits = t([[2.0, 1.0, 0.5, 3.0]]).expand(n, 4).reshape(n, 1, 4)
    negatives, mask = torch.full((n, 1), 3), torch.ones((n, 1), dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    per_row = cringe_token_loss(logits, negatives, mask, k=2, generator=gen)
    took_best = torch.isclose(per_row, t(math.log(1 + math.e)))
    took_second = torch.isclose(per_row, t(math.log(1 + math.e**2)))
    assert (took_best | took_second).all()
    p, se = took_best.float().mean().item(), math.sqrt(0.7311 * 0.2689 / n)
    assert abs(p - 0.7311) < 4 * se
    again = cringe_token_loss(
        logits, negatives, mask, k=2, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(per_row, again), "a fixed generator fixes the sampled positives"


def test_cringe_gradient_lowers_the_negative_and_raises_the_sampled_positive():
    logits = t([[[2.0, 1.0, 0.5, 3.0]]], requires_grad=True)
    cringe_token_loss(logits, t([[3]]), t([[True]]), k=1).backward()
    grad = logits.grad[0, 0]
    assert grad[3] > 0 and grad[0] < 0 and grad[1] == 0 and grad[2] == 0


def test_cringe_k_larger_than_the_vocabulary_is_refused():
    with pytest.raises(ValueError, match="exceeds the vocabulary"):
        cringe_token_loss(torch.zeros(1, 1, 4), t([[0]]), t([[True]]), k=4)


def test_gate_limits_and_stop_gradient():
    w = t([0.0, 100.0, -100.0], requires_grad=True)
    g = cringe_gate(w, torch.zeros(3), b=0.0, tau=1.0)
    assert g[0].item() == 0.5 and g[1].item() < 1e-6 and g[2].item() > 1 - 1e-6
    assert not g.requires_grad
    assert cringe_gate(t([3.0]), t([1.0]), b=4.0, tau=2.0).item() == pytest.approx(
        1 / (1 + math.exp(-1))
    )


def test_pairwise_cringe_gates_as_configured():
    g, ce, cr = t([0.25]), t([4.0]), t([2.0])
    assert pairwise_cringe_loss(g, ce, cr, gate_ce=True).item() == 1.5
    assert pairwise_cringe_loss(g, ce, cr, gate_ce=False).item() == 4.5


def test_kl_penalised_rewards_by_hand():
    rewards = kl_penalised_rewards(
        t([[0.0, -1.0, -2.0]]),
        t([[0.0, -1.5, -1.0]]),
        t([[False, True, True]]),
        t([0.7]),
        kl_coef=0.1,
    )
    torch.testing.assert_close(rewards, t([[0.0, -0.05, 0.8]]))


def test_gae_against_the_unrolled_recursion():
    r, v = t([[0.0, 0.5, -0.2, 1.0]]), t([[9.0, 0.3, 0.1, 0.4]])
    mask = t([[False, True, True, True]])  # position 0 is a prompt token: ignored
    gamma, lam = 0.9, 0.8
    a3 = r[0, 3] - v[0, 3]
    a2 = r[0, 2] + gamma * v[0, 3] - v[0, 2] + gamma * lam * a3
    a1 = r[0, 1] + gamma * v[0, 2] - v[0, 1] + gamma * lam * a2
    adv, ret = gae(r, v, mask, gamma, lam)
    torch.testing.assert_close(adv, t([[0.0, a1, a2, a3]]))
    torch.testing.assert_close(ret[mask], (adv + v)[mask])


def test_whiten_over_the_mask():
    x = t([[100.0, 1.0, 2.0, 3.0]])
    w = whiten(x, t([[False, True, True, True]]))
    torch.testing.assert_close(w, t([[0.0, -1.0, 0.0, 1.0]]), atol=1e-6, rtol=0)


def test_ppo_policy_loss_clips_the_ratio():
    old, new, mask = t([[0.0]]), t([[math.log(1.5)]]), t([[True]])
    loss, clipfrac = ppo_policy_loss(new, old, t([[1.0]]), mask, clip=0.2)
    assert loss.item() == pytest.approx(-1.2) and clipfrac.item() == 1.0
    loss, clipfrac = ppo_policy_loss(new, old, t([[-1.0]]), mask, clip=0.2)
    assert loss.item() == pytest.approx(1.5) and clipfrac.item() == 0.0


def test_ppo_value_loss_takes_the_larger_of_clipped_and_unclipped():
    loss = ppo_value_loss(t([[2.0]]), t([[1.0]]), t([[0.0]]), t([[True]]), clip=0.5)
    assert loss.item() == pytest.approx(0.5 * 4.0)
    loss = ppo_value_loss(t([[0.2]]), t([[1.0]]), t([[1.5]]), t([[True]]), clip=0.5)
    assert loss.item() == pytest.approx(0.5 * max(1.3**2, 1.0**2))


def test_adaptive_kl_controller_update_rule():
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10_000)
    ctl.update(kl=12.0, n_samples=100)  # error clipped to +0.2
    assert ctl.value == pytest.approx(0.2 * (1 + 0.2 * 100 / 10_000))
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10_000)
    ctl.update(kl=6.6, n_samples=100)  # error 0.1
    assert ctl.value == pytest.approx(0.2 * (1 + 0.1 * 0.01))
    ctl.update(kl=0.0, n_samples=5_000)  # error clipped to -0.2
    assert ctl.value == pytest.approx(0.2 * 1.001 * 0.9)
    fixed = FixedKLController(0.3)
    fixed.update(kl=100.0, n_samples=100)
    assert fixed.value == 0.3


def test_ipo_loss_by_hand():
    # log-ratios: chosen -1 - (-2) = 1, rejected -3 - (-2) = -1, so h = 2
    args = t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0])
    assert ipo_loss(*args, tau=0.5).item() == 1.0  # target 1/(2 * 0.5) = 1: (2 - 1)^2
    assert ipo_loss(*args, tau=1.0).item() == 2.25  # target 0.5: 1.5^2
    assert ipo_loss(*args, tau=0.25).item() == 0.0  # target 2: h is on it
    at_ref = ipo_loss(t([-4.0]), t([-7.0]), t([-4.0]), t([-7.0]), tau=0.1)
    assert at_ref.item() == pytest.approx(25.0)  # h = 0: (1/(2 * 0.1))^2


def test_ipo_gradient_pulls_h_towards_the_target_from_both_sides():
    w, lose = t([-1.0], requires_grad=True), t([-3.0], requires_grad=True)
    ipo_loss(w, lose, t([-2.0]), t([-2.0]), tau=0.5).backward()
    assert (w.grad.item(), lose.grad.item()) == (2.0, -2.0)  # dL/dh = 2 (h - 1) = 2
    w, lose = t([-1.0], requires_grad=True), t([-3.0], requires_grad=True)
    ipo_loss(w, lose, t([-2.0]), t([-2.0]), tau=1 / 6).backward()  # target 3 > h = 2
    assert w.grad.item() == pytest.approx(-2.0) and lose.grad.item() == pytest.approx(2.0)


@pytest.mark.parametrize("tau", [0.0, -0.1])
def test_ipo_tau_must_be_positive(tau):
    with pytest.raises(ValueError, match=f"tau = {tau}"):
        ipo_loss(t([0.0]), t([0.0]), t([0.0]), t([0.0]), tau=tau)


def test_conservative_dpo_loss_by_hand():
    # beta * h = 0.5 * (1 - (-1)) = 1, as in test_dpo_loss_by_hand
    loss = conservative_dpo_loss(
        t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.5, label_smoothing=0.1
    )
    expected = 0.9 * math.log(1 + math.exp(-1)) + 0.1 * math.log(1 + math.e)
    assert loss.item() == pytest.approx(expected)


def test_conservative_dpo_with_no_smoothing_is_dpo_exactly():
    gen = torch.Generator().manual_seed(0)
    args = [torch.randn(64, generator=gen) * 20 for _ in range(4)]  # wide: saturated sigmoids too
    for beta in (0.05, 0.1, 1.0, 5.0):
        assert torch.equal(
            conservative_dpo_loss(*args, beta=beta, label_smoothing=0.0), dpo_loss(*args, beta=beta)
        )


def test_conservative_dpo_stops_pushing_at_a_finite_margin():
    # minimum where sigmoid(beta h) = 1 - eps, i.e. beta h = log(0.9 / 0.1) = log 9 for eps = 0.1
    w = t([math.log(9)], requires_grad=True)
    conservative_dpo_loss(w, t([0.0]), t([0.0]), t([0.0]), beta=1.0, label_smoothing=0.1).backward()
    assert w.grad.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("eps", [-0.01, 0.5])
def test_conservative_dpo_smoothing_outside_its_range_is_refused(eps):
    with pytest.raises(ValueError, match=f"label_smoothing = {eps}"):
        conservative_dpo_loss(t([0.0]), t([0.0]), t([0.0]), t([0.0]), beta=0.1, label_smoothing=eps)


def test_unlikelihood_loss_by_hand():
    # row 0: y_w tokens p = 0.5, 0.25 (then a 0 outside the response): -log(0.5 * 0.25) = log 8;
    #        y_l tokens p = 0.5, 0.9, the third masked: -0.5 * (log 0.5 + log 0.1) = 0.5 log 20
    # row 1: y_w token p = 0.5: log 2; y_l tokens p = 0.2, 0.5 after a prompt position:
    #        -0.5 * (log 0.8 + log 0.5) = 0.5 log 2.5
    log = math.log
    chosen = t([[log(0.5), log(0.25), 0.0], [0.0, 0.0, log(0.5)]])
    rejected = t([[log(0.5), log(0.9), 0.0], [0.0, log(0.2), log(0.5)]])
    mask = t([[True, True, False], [False, True, True]])
    loss = unlikelihood_loss(chosen, rejected, mask, alpha=0.5)
    torch.testing.assert_close(loss, t([log(8) + 0.5 * log(20), log(2) + 0.5 * log(2.5)]))


def test_unlikelihood_gradient_lowers_the_rejected_token():
    # d/dl [-alpha log(1 - e^l)] = alpha e^l / (1 - e^l) = 0.5 * 0.5 / 0.5 at p = 0.5
    rejected = t([[math.log(0.5)]], requires_grad=True)
    unlikelihood_loss(t([[0.0]]), rejected, t([[True]]), alpha=0.5).backward()
    assert rejected.grad.item() == pytest.approx(0.5)


def test_unlikelihood_of_a_certain_token_is_capped_not_infinite():
    # p = 1 is clamped to 1 - 1e-6: the term is -log(1e-6) (float64 so 1 - 1e-6 is exact enough)
    rejected = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    chosen = torch.zeros(1, 1, dtype=torch.float64)
    loss = unlikelihood_loss(chosen, rejected, t([[True]]), alpha=1.0)
    assert loss.item() == pytest.approx(6 * math.log(10))
    loss.backward()
    assert torch.isfinite(rejected.grad).all()


def test_bradley_terry_loss_by_hand():
    loss = bradley_terry_loss(t([2.0, 0.5, 0.0]), t([1.0, 0.5, 200.0]))
    # log(1 + e^-1); equal rewards: log 2; a margin of -200: log(1 + e^200) = 200, not inf
    torch.testing.assert_close(loss, t([math.log(1 + math.exp(-1)), math.log(2), 200.0]))


def test_plackett_luce_loss_by_hand_for_three_responses():
    # row 0: beta h = [2, 1, 0]: -(2 - log(e^2 + e + 1)) - (1 - log(e + 1))
    # row 1: policy = ref, all orders equally likely: -log(1/3!) = log 6
    e = math.e
    policy = t([[-1.0, -2.0, -3.0], [-5.0, -6.0, -7.0]])
    ref = t([[-3.0, -3.0, -3.0], [-5.0, -6.0, -7.0]])
    loss = plackett_luce_loss(policy, ref, beta=1.0)
    row0 = math.log(e**2 + e + 1) - 2 + math.log(e + 1) - 1
    torch.testing.assert_close(loss, t([row0, math.log(6)]))


def test_plackett_luce_with_two_responses_is_dpo():
    gen = torch.Generator().manual_seed(0)
    policy, ref = torch.randn(32, 2, generator=gen) * 5, torch.randn(32, 2, generator=gen) * 5
    for beta in (0.1, 1.0, 5.0):
        dpo = dpo_loss(policy[:, 0], policy[:, 1], ref[:, 0], ref[:, 1], beta=beta)
        torch.testing.assert_close(plackett_luce_loss(policy, ref, beta=beta), dpo)


def test_plackett_luce_ignores_a_constant_added_to_a_prompts_log_ratios():
    gen = torch.Generator().manual_seed(1)
    policy, ref = torch.randn(8, 4, generator=gen), torch.randn(8, 4, generator=gen)
    shift = torch.randn(8, 1, generator=gen) * 10  # one constant per prompt
    torch.testing.assert_close(
        plackett_luce_loss(policy + shift, ref, beta=0.5), plackett_luce_loss(policy, ref, beta=0.5)
    )


def test_plackett_luce_needs_a_ranking_of_at_least_two():
    with pytest.raises(ValueError, match="K >= 2"):
        plackett_luce_loss(torch.zeros(3, 1), torch.zeros(3, 1), beta=0.1)
