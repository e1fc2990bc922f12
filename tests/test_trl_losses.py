"""Every loss TRL 1.16 implements equals TRL's own code on the same random tensors (to 1e-6), and
the losses on by-hand values where their equations say what they must be."""

import math

import pytest
import torch
import trl_reference

from pipeline import losses

t = torch.tensor
B, T = 6, 10  # pairs; tokens per sequence (a 3-token prompt, responses of 2 to 7 tokens)


@pytest.fixture(scope="module")
def batch():
    """A batch as TRL lays it out, [chosen; rejected], and the same as our losses take it."""
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, T - 2, (2 * B,), generator=gen)
    completion_mask = (torch.arange(T) >= 3) & (torch.arange(T) < 3 + lengths[:, None])
    per_token = -torch.rand(2 * B, T - 1, generator=gen) * 3 - 0.01
    per_token = torch.where(completion_mask[:, 1:], per_token, torch.zeros_like(per_token))
    ref = per_token.sum(-1) + torch.randn(2 * B, generator=gen) * 2  # pi_ref some nats away
    ours = {
        "policy_chosen": per_token[:B].sum(-1),
        "policy_rejected": per_token[B:].sum(-1),
        "ref_chosen": ref[:B],
        "ref_rejected": ref[B:],
        "chosen_length": lengths[:B].float(),
        "rejected_length": lengths[B:].float(),
        "chosen_token_logps": per_token[:B],
    }
    return per_token, completion_mask.long(), ours


def call(loss, inputs, **settings):
    """Our loss fed as the trainer feeds it: by its arguments' names."""
    import inspect

    names = inspect.signature(loss).parameters
    return loss(**{n: inputs[n] if n in inputs else settings[n] for n in names})


# TRL loss_type -> (our loss, our settings from TRL's beta and label_smoothing)
DPO_FAMILY = {
    "sigmoid": (losses.dpo_loss, lambda b, e: {"beta": b}),
    "hinge": (losses.slic_hinge_loss, lambda b, e: {"beta": b}),
    "ipo": (losses.ipo_mean_loss, lambda b, e: {"tau": b}),
    "exo_pair": (losses.exo_loss, lambda b, e: {"beta": b, "epsilon": e}),
    "nca_pair": (losses.nca_loss, lambda b, e: {"beta": b}),
    "robust": (losses.robust_dpo_loss, lambda b, e: {"beta": b, "epsilon": e}),
    "bco_pair": (losses.bco_pair_loss, lambda b, e: {"beta": b}),
    "sppo_hard": (losses.sppo_hard_loss, lambda b, e: {"beta": b}),
    "aot": (losses.aot_loss, lambda b, e: {"beta": b}),
    "aot_unpaired": (losses.aot_unpaired_loss, lambda b, e: {"beta": b}),
    "apo_zero": (losses.apo_zero_loss, lambda b, e: {"beta": b}),
    "apo_down": (losses.apo_down_loss, lambda b, e: {"beta": b}),
    "discopop": (losses.discopop_loss, lambda b, e: {"beta": b, "tau": 0.05}),
    "sigmoid_norm": (losses.dpo_norm_loss, lambda b, e: {"beta": b}),
}


@pytest.mark.parametrize("loss_type", sorted(DPO_FAMILY))
@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_each_dpo_loss_type_equals_trls(batch, loss_type, beta):
    per_token, mask, ours = batch
    # EXO needs eps > 0; TRL's other smoothed losses take 0 by default, robust DPO its paper's 0.1
    eps = {"exo_pair": 1e-3, "robust": 0.1}.get(loss_type, 0.0)
    theirs = trl_reference.dpo_trainer_loss(
        per_token,
        mask,
        ours["ref_chosen"],
        ours["ref_rejected"],
        loss_type,
        beta,
        label_smoothing=eps,
    )
    loss, settings = DPO_FAMILY[loss_type]
    torch.testing.assert_close(
        call(loss, ours, **settings(beta, eps)).mean(), theirs, atol=1e-6, rtol=1e-6
    )


@pytest.mark.parametrize(
    "divergence, loss, settings",
    [
        ("forward_kl", losses.f_dpo_forward_kl_loss, {}),
        ("js_divergence", losses.f_dpo_js_loss, {}),
        ("alpha_divergence", losses.f_dpo_alpha_loss, {"alpha": 0.5}),
    ],
)
def test_each_f_divergence_equals_trls(batch, divergence, loss, settings):
    per_token, mask, ours = batch
    theirs = trl_reference.dpo_trainer_loss(
        per_token,
        mask,
        ours["ref_chosen"],
        ours["ref_rejected"],
        "sigmoid",
        0.1,
        f_divergence_type=divergence,
        f_alpha_divergence_coef=0.5,
    )
    torch.testing.assert_close(
        call(loss, ours, beta=0.1, **settings).mean(), theirs, atol=1e-6, rtol=1e-6
    )


def test_trls_sft_loss_is_preferred_ft_per_token_of_the_batch(batch):
    """TRL's "sft" averages over the batch's chosen tokens; Preferred-FT sums each response's."""
    per_token, mask, ours = batch
    theirs = trl_reference.dpo_trainer_loss(
        per_token, mask, ours["ref_chosen"], ours["ref_rejected"], "sft", 0.1
    )
    ft = losses.preferred_ft_loss(ours["chosen_token_logps"])
    torch.testing.assert_close(ft.sum() / ours["chosen_length"].sum(), theirs, atol=1e-6, rtol=1e-6)


@pytest.fixture
def equal_lengths(batch):
    """The batch with every response 5 tokens long: TRL's NLL averages over the batch's tokens, ours
    over each response's, which agree when the lengths do."""
    gen = torch.Generator().manual_seed(1)
    logps = -torch.rand(2, B, 5, generator=gen) * 3 - 0.01
    five = torch.full((B,), 5.0)
    return {
        "policy_chosen": logps[0].sum(-1),
        "policy_rejected": logps[1].sum(-1),
        "chosen_length": five,
        "rejected_length": five,
        "nll": -logps[0].mean(),
    }


@pytest.mark.parametrize("beta", [2.0, 10.0])
def test_simpo_equals_trls_cpo_trainer_with_loss_type_simpo(equal_lengths, beta):
    x = equal_lengths
    theirs = trl_reference.cpo_trainer_losses(
        x["policy_chosen"] / 5, x["policy_rejected"] / 5, "simpo", beta, simpo_gamma=0.5
    )
    ours = call(losses.simpo_loss, x, beta=beta, gamma=0.5)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)


def test_cpo_equals_trls_cpo_trainer_with_its_nll_term(equal_lengths):
    x = equal_lengths
    theirs = (
        trl_reference.cpo_trainer_losses(
            x["policy_chosen"], x["policy_rejected"], "sigmoid", 0.1
        ).mean()
        + 1.0 * x["nll"]
    )
    ours = call(losses.cpo_loss, x, beta=0.1, alpha=1.0).mean()
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("lam", [0.1, 1.0])
def test_orpo_equals_trls_orpo_trainer(equal_lengths, lam):
    x = equal_lengths
    theirs = (
        x["nll"]
        - trl_reference.orpo_trainer_losses(
            x["policy_chosen"] / 5, x["policy_rejected"] / 5, lam
        ).mean()
    )
    torch.testing.assert_close(
        call(losses.orpo_loss, x, lam=lam).mean(), theirs, atol=1e-6, rtol=1e-6
    )


# --- by hand ----------------------------------------------------------------------------------
# s_w = -1 - (-2) = 1, s_l = -3 - (-2) = -1, D = 2 (as in tests/test_losses.py)
PAIR = {
    "policy_chosen": t([-1.0]),
    "policy_rejected": t([-3.0]),
    "ref_chosen": t([-2.0]),
    "ref_rejected": t([-2.0]),
    "chosen_length": t([2.0]),
    "rejected_length": t([4.0]),
}


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize(
    "loss, settings, expected",
    [
        (losses.slic_hinge_loss, {"beta": 0.25}, 0.5),  # 1 - 0.25 * 2
        (losses.slic_hinge_loss, {"beta": 1.0}, 0.0),  # margin past 1/beta
        (losses.ipo_mean_loss, {"tau": 0.5}, (0.5 + 0.25 - 1) ** 2),  # s_w/2 - s_l/4 = 0.75
        (
            losses.nca_loss,
            {"beta": 1.0},
            -math.log(sigmoid(1)) - 0.5 * math.log(sigmoid(-1)) - 0.5 * math.log(sigmoid(1)),
        ),
        (
            losses.robust_dpo_loss,
            {"beta": 0.5, "epsilon": 0.1},
            (-0.9 * math.log(sigmoid(1)) + 0.1 * math.log(sigmoid(-1))) / 0.8,
        ),
        (losses.bco_pair_loss, {"beta": 1.0}, -2 * math.log(sigmoid(1))),
        (losses.sppo_hard_loss, {"beta": 0.5}, 0.0),  # s_w = 1 = 1/(2 beta), s_l = -1
        (losses.apo_zero_loss, {"beta": 1.0}, 1 - sigmoid(1) + sigmoid(-1)),
        (losses.apo_down_loss, {"beta": 1.0}, sigmoid(1) + 1 - sigmoid(2)),
        (losses.dpo_norm_loss, {"beta": 1.0}, -math.log(sigmoid(0.75))),
        (
            losses.exo_loss,
            {"beta": 0.5, "epsilon": 0.1},
            sigmoid(1) * (math.log(sigmoid(1)) - math.log(0.9))
            + sigmoid(-1) * (math.log(sigmoid(-1)) - math.log(0.1)),
        ),
        (
            losses.discopop_loss,
            {"beta": 0.5, "tau": 1.0},
            -math.log(sigmoid(1)) * (1 - sigmoid(1)) + math.exp(-1) * sigmoid(1),
        ),
        (
            losses.f_dpo_forward_kl_loss,
            {"beta": 1.0},
            -math.log(sigmoid((1 - math.exp(-1)) - (1 - math.e))),
        ),
        (
            losses.f_dpo_js_loss,
            {"beta": 1.0},
            -math.log(sigmoid(math.log(sigmoid(1)) - math.log(sigmoid(-1)))),
        ),
        (
            losses.f_dpo_alpha_loss,
            {"beta": 1.0, "alpha": 0.5},  # f'(u) = 2 (1 - u^-0.5)
            -math.log(sigmoid(2 * (1 - math.exp(-0.5)) - 2 * (1 - math.exp(0.5)))),
        ),
        (
            losses.simpo_loss,
            {"beta": 2.0, "gamma": 0.5},  # -1/2 + 3/4 = 0.25
            -math.log(sigmoid(2.0 * 0.25 - 0.5)),
        ),
        (losses.cpo_loss, {"beta": 1.0, "alpha": 1.0}, -math.log(sigmoid(2)) + 0.5),
    ],
)
def test_a_pairwise_loss_by_hand(loss, settings, expected):
    assert call(loss, PAIR, **settings).item() == pytest.approx(expected, rel=1e-6)


def test_aot_sorts_the_margins_across_the_batch():
    # policy margins [3, -1] sorted [-1, 3]; reference margins [0, 2] sorted [0, 2]: deltas [-1, 1]
    out = losses.aot_loss(t([1.0, 0.0]), t([-2.0, 1.0]), t([0.0, 1.0]), t([0.0, -1.0]), beta=1.0)
    torch.testing.assert_close(out, t([-math.log(sigmoid(-1)), -math.log(sigmoid(1))]))


def test_orpo_by_hand():
    # P(y_w) = exp(-1/2), P(y_l) = exp(-3/4): odds p / (1 - p)
    def log_odds(p):
        return math.log(p / (1 - p))

    expected = 0.5 - 0.1 * math.log(sigmoid(log_odds(math.exp(-0.5)) - log_odds(math.exp(-0.75))))
    assert call(losses.orpo_loss, PAIR, lam=0.1).item() == pytest.approx(expected, rel=1e-6)


def test_f_dpo_alpha_near_one_is_dpo():
    assert torch.equal(
        call(losses.f_dpo_alpha_loss, PAIR, beta=0.3, alpha=1.0),
        call(losses.dpo_loss, PAIR, beta=0.3),
    )


def test_robust_dpo_without_noise_is_dpo():
    torch.testing.assert_close(
        call(losses.robust_dpo_loss, PAIR, beta=0.3, epsilon=0.0),
        call(losses.dpo_loss, PAIR, beta=0.3),
    )


@pytest.mark.parametrize("beta, weights", [(0.1, (1.0, 1.0)), (1.0, (1.0, 1.33))])
def test_kto_equals_trls_kto_trainer(batch, beta, weights):
    per_token, mask, _ = batch
    gen = torch.Generator().manual_seed(2)
    kl_per_token = torch.where(
        mask[:, 1:].bool(),
        -torch.rand(per_token.shape, generator=gen) * 3,
        torch.zeros_like(per_token),
    )
    desirable = torch.arange(2 * B) % 3 != 0
    ref = per_token.sum(-1) + torch.randn(2 * B, generator=gen)
    ref_kl = kl_per_token.sum(-1) - torch.rand(2 * B, generator=gen)  # z0 > 0: not clamped
    theirs = trl_reference.kto_trainer_loss(
        per_token, kl_per_token, mask, desirable, ref, ref_kl, beta, *weights
    )
    z0 = losses.kto_reference_point(kl_per_token.sum(-1), ref_kl)
    ours = losses.kto_loss(per_token.sum(-1), ref, desirable, z0, beta, *weights)
    assert z0 > 0
    torch.testing.assert_close(ours.mean(), theirs, atol=1e-6, rtol=1e-6)


def test_kto_by_hand():
    # s = 1 for both; z0 = 0.5: desirable 1 - sigmoid(0.5 beta), undesirable 1 - sigmoid(-0.5 beta)
    out = losses.kto_loss(
        t([-1.0, -1.0]),
        t([-2.0, -2.0]),
        t([True, False]),
        t(0.5),
        beta=2.0,
        desirable_weight=1.0,
        undesirable_weight=3.0,
    )
    torch.testing.assert_close(out, t([1 - sigmoid(1.0), 3 * (1 - sigmoid(-1.0))]))
    # the reference point: a mean log-ratio of mismatched pairs, never below 0, without gradient
    policy = t([-1.0, -4.0], requires_grad=True)
    assert losses.kto_reference_point(policy, t([-2.0, -2.0])).item() == 0.0  # mean -0.5 -> 0
    z0 = losses.kto_reference_point(policy, t([-3.0, -4.0]))
    assert z0.item() == 1.0 and not z0.requires_grad


# --- online: GRPO, RLOO -------------------------------------------------------------------------


def test_group_advantages_by_hand():
    # group [1, 2, 3]: mean 2, unbiased std 1; group [5, 5, 5]: all equal, no signal
    adv = losses.group_advantages(t([1.0, 2.0, 3.0, 5.0, 5.0, 5.0]), group_size=3)
    torch.testing.assert_close(adv, t([-1 / 1.0001, 0.0, 1 / 1.0001, 0.0, 0.0, 0.0]))


def test_leave_one_out_advantages_by_hand():
    # r = [1, 2, 6]: baselines (2 + 6)/2 = 4, (1 + 6)/2 = 3.5, (1 + 2)/2 = 1.5
    adv = losses.leave_one_out_advantages(t([1.0, 2.0, 6.0]), group_size=3)
    torch.testing.assert_close(adv, t([-3.0, -1.5, 4.5]))


def test_rloo_reward_folds_in_the_sequence_log_ratio():
    old, ref = t([[-1.0, -2.0, 0.0]]), t([[-1.5, -1.0, 0.0]])  # log-ratio sum 0.5 - 1 = -0.5
    assert losses.kl_penalised_scores(t([0.8]), old, ref, beta=0.2).item() == pytest.approx(0.9)


def test_grpo_loss_by_hand():
    # one sample of two tokens (a third masked), A = 1, ratio 1 at the first update:
    # per token -1 + beta * k3, k3 = exp(d) - d - 1 with d = log ref - log pi
    logps, ref = t([[-1.0, -2.0, -9.0]]), t([[-1.5, -1.0, 0.0]])
    mask = t([[True, True, False]])
    k3 = [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1.0 - 1]
    out = losses.grpo_loss(logps, logps, ref, t([1.0]), mask, beta=0.1, clip=0.2)
    assert out.item() == pytest.approx((-1 + 0.1 * k3[0] - 1 + 0.1 * k3[1]) / 2)
    # a ratio past 1 + clip with a positive advantage is clipped: no gradient through it
    new = logps.clone().requires_grad_(True)
    losses.grpo_loss(new, logps - 1.0, logps, t([1.0]), mask, beta=0.0, clip=0.2).backward()
    assert (new.grad == 0).all()


def test_rloo_loss_clips_the_sequence_ratio():
    # ratio e^0.5 = 1.65 > 1.2: with A = 2 the clipped term 1.2 * 2 is the smaller
    assert losses.rloo_loss(t([-1.0]), t([-1.5]), t([2.0]), clip=0.2).item() == pytest.approx(-2.4)
    # with A = -2 the unclipped -3.30 is the smaller of (-3.30, -2.4): loss 3.30
    assert losses.rloo_loss(t([-1.0]), t([-1.5]), t([-2.0]), clip=0.2).item() == pytest.approx(
        2 * math.exp(0.5)
    )
