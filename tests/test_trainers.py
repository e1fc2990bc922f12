"""The trainers move the policy the right way on tiny models."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PAIRWISE_PARAMS, PPO_PARAMS

from pipeline.batching import pair_batch
from pipeline.logprobs import response_logprobs
from pipeline.losses import dpo_loss
from pipeline.settings import read
from pipeline.stages.ppo import PolicyWithValue
from pipeline.stages.ppo import Settings as PPOSettings
from pipeline.stages.ppo import train as train_ppo
from pipeline.stages.preference import Settings as PairwiseSettings
from pipeline.stages.preference import train as train_pairwise

PAIRS = pd.DataFrame(
    {
        "prompt_id": [0, 1, 2, 3],
        "prompt_ids": [[5, 6], [7, 8, 9], [10], [11, 12]],
        "chosen_ids": [[20, 21, 22], [23, 24], [25, 26, 27, 28], [29]],
        "rejected_ids": [[30, 31], [32, 33, 34], [35], [36, 37, 38]],
    }
)


def logratio_margin(policy, ref, pairs, pad_id):
    batch, (chosen, rejected) = pair_batch(pairs, pad_id)
    with torch.no_grad():
        delta = response_logprobs(policy, batch) - response_logprobs(ref, batch)
    return (delta[chosen] - delta[rejected]).mean().item(), delta.abs().mean().item()


def reference(policy, pairs, pad_id):
    batch, (chosen, rejected) = pair_batch(pairs, pad_id)
    with torch.no_grad():
        logps = response_logprobs(policy, batch)
    return pd.DataFrame(
        {"ref_chosen": logps[chosen].numpy(), "ref_rejected": logps[rejected].numpy()}
    )


def test_a_dpo_step_raises_the_chosen_minus_rejected_margin(policy, tokenizer):
    model = copy.deepcopy(policy)
    ref = reference(policy, PAIRS, tokenizer.pad_token_id)
    before, _ = logratio_margin(model, policy, PAIRS, tokenizer.pad_token_id)
    batch, (chosen, rejected) = pair_batch(PAIRS, tokenizer.pad_token_id)
    logps = response_logprobs(model, batch)
    loss = dpo_loss(
        logps[chosen],
        logps[rejected],
        torch.tensor(ref["ref_chosen"].values),
        torch.tensor(ref["ref_rejected"].values),
        beta=0.1,
    )
    loss.mean().backward()
    with torch.no_grad():
        for w in model.parameters():
            w -= 0.05 * w.grad
    after, _ = logratio_margin(model, policy, PAIRS, tokenizer.pad_token_id)
    assert before == 0.0 and after > 0.0


class ConstantScorer:
    def __call__(self, texts):
        return np.full(len(texts), 0.5)


def pairwise_config(method, **own):
    """The pairwise trainer's settings for `method` with its own settings `own`."""
    return PAIRWISE_PARAMS | {"method": method} | own


def dpo_config(beta):
    return pairwise_config("dpo", beta=beta)


def pairwise(p: dict) -> PairwiseSettings:
    return read(PairwiseSettings, p, "test")


def test_dpo_with_a_very_large_beta_stays_near_pi_ref(policy, tokenizer):
    pad = tokenizer.pad_token_id
    ref = reference(policy, PAIRS, pad)
    moved = {}
    for beta in (0.1, 1000.0):
        model = copy.deepcopy(policy)
        metrics = train_pairwise(
            model, tokenizer, PAIRS, ref, pairwise(dpo_config(beta)), ConstantScorer()
        )
        margin, moved[beta] = logratio_margin(model, policy, PAIRS, pad)
        assert margin > 0 and metrics["reward_accuracy"].iloc[-1] == 1.0
    assert moved[1000.0] < 0.2 * moved[0.1]


def test_a_compiled_forward_trains_as_the_eager_one(policy, tokenizer):
    ref = reference(policy, PAIRS, tokenizer.pad_token_id)
    runs = [
        train_pairwise(
            copy.deepcopy(policy),
            tokenizer,
            PAIRS,
            ref,
            pairwise(dpo_config(0.1) | {"epochs": 3, "compile": compiled}),
            ConstantScorer(),
        )
        for compiled in (False, True)
    ]
    for column in ("loss", "grad_norm", "reward_margin"):
        eager, compiled = (torch.tensor(r[column].dropna().to_numpy()) for r in runs)
        assert len(eager) == 3
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-6, msg=column)


@pytest.mark.parametrize(
    "method, extra",
    [
        ("ipo", {"tau": 0.1}),
        ("unlikelihood", {"alpha": 1.0}),
        ("cdpo_noisy", {"beta": 0.1, "label_smoothing": 0.2}),
    ],
)
def test_each_pairwise_baseline_raises_the_margin_over_pi_ref(policy, tokenizer, method, extra):
    pad = tokenizer.pad_token_id
    model = copy.deepcopy(policy)
    p = pairwise(pairwise_config(method, **extra))
    train_pairwise(model, tokenizer, PAIRS, reference(policy, PAIRS, pad), p, ConstantScorer())
    margin, _ = logratio_margin(model, policy, PAIRS, pad)
    assert margin > 0


def test_preferred_ft_raises_the_chosen_responses_only_objective(policy, tokenizer):
    pad = tokenizer.pad_token_id
    model = copy.deepcopy(policy)
    p = pairwise(pairwise_config("preferred_ft") | {"epochs": 3})
    metrics = train_pairwise(model, tokenizer, PAIRS, None, p, ConstantScorer())
    batch, (chosen, _) = pair_batch(PAIRS, pad)
    with torch.no_grad():
        gain = response_logprobs(model, batch) - response_logprobs(policy, batch)
    assert (
        gain[chosen].mean() > 0
        and metrics["loss"].dropna().iloc[-1] < metrics["loss"].dropna().iloc[0]
    )


class VowelScorer:
    """A toy reward: the share of vowels in the text."""

    def __call__(self, texts):
        return np.array([sum(c in "aeiou" for c in t) / max(1, len(t)) for t in texts])


def test_ppo_raises_a_toy_reward_within_a_few_iterations(policy, tokenizer):
    torch.manual_seed(0)
    model = PolicyWithValue(copy.deepcopy(policy))
    ref = copy.deepcopy(policy).requires_grad_(False)
    prompts = [[5, 6], [7, 8, 9], [10], [11, 12]]
    p = PPO_PARAMS | {
        "adaptive_kl": False,
        "init_kl_coef": 0.01,
        "horizon": 10000,
        "iterations": 12,
        "rollout_size": 64,
        "minibatch_size": 16,
        "ppo_epochs": 4,
        "lr": 1e-2,
        "warmup_steps": 1,
        "max_new_tokens": 8,
        "checkpoint_every": 0,
    }
    metrics = train_ppo(model, ref, tokenizer, prompts, VowelScorer(), read(PPOSettings, p, "test"))
    assert metrics["reward"].iloc[-3:].mean() > metrics["reward"].iloc[:3].mean() + 0.05
    assert metrics["kl_coef"].eq(0.01).all(), "a fixed KL coefficient stays fixed"


@pytest.mark.parametrize("method, beta", [("grpo", 0.0), ("rloo", 0.01), ("online_dpo", 0.1)])
def test_each_online_method_raises_a_toy_reward_within_a_few_iterations(
    policy, tokenizer, method, beta
):
    from pipeline.stages.online import Settings as OnlineSettings
    from pipeline.stages.online import train as train_online

    torch.manual_seed(0)
    model = copy.deepcopy(policy)
    ref = copy.deepcopy(policy).requires_grad_(False)
    ppo_section = {k: v for k, v in PPO_PARAMS.items() if k != "target_kl"}
    p = ppo_section | {
        "method": method,
        "beta": beta,
        "n_per_prompt": 4,
        "iterations": 12,
        "rollout_size": 64,
        "minibatch_size": 16,
        "ppo_epochs": 2,
        "lr": 1e-2,
        "warmup_steps": 1,
        "max_new_tokens": 8,
        "checkpoint_every": 0,
    }
    p = read(OnlineSettings, p, "test")
    metrics = train_online(
        model, ref, tokenizer, [[5, 6], [7, 8, 9], [10], [11, 12]], VowelScorer(), p
    )
    assert metrics["reward"].iloc[-3:].mean() > metrics["reward"].iloc[:3].mean() + 0.05
    assert (metrics["kl"].iloc[0] == 0) and metrics["kl"].iloc[-1] != 0  # it moved from pi_ref


def test_plackett_luce_and_dpo_on_the_same_rankings_train_through_the_stage_cli(
    tmp_path, policy, policy_dir
):
    """rankings -> pi_ref's log-probs (the reference stage) -> the listwise and pairwise
    trainers, each through its command line, in this process."""
    import importlib
    import json

    from safetensors.torch import load_file

    rankings = pd.DataFrame(
        {
            "prompt_id": range(8),
            "prompt_ids": [[5 + i % 4, 6] for i in range(8)],
            **{f"rank{k}_ids": [[20 + 3 * k + i % 3, 21] for i in range(8)] for k in range(4)},
        }
    )
    rankings.to_parquet(tmp_path / "rankings.parquet")

    def stage(module, *args):
        importlib.import_module(f"pipeline.stages.{module}").main(list(args))

    stage(
        "reference",
        "--params",
        json.dumps({"batch_size": 4}),
        "--pairs",
        str(tmp_path / "rankings.parquet"),
        "--policy",
        str(policy_dir),
        "--out",
        str(tmp_path / "ref.parquet"),
    )
    ref = pd.read_parquet(tmp_path / "ref.parquet")
    assert list(ref.columns) == [f"ref_rank{k}" for k in range(4)] and len(ref) == 8
    for method in ("plackett_luce", "dpo_ranked"):
        # pairs shuffled: batches of 4 pairs of one prompt make the last batch's accuracy noisy
        p = dpo_config(0.1) | {
            "method": method,
            "epochs": 5,
            "batch_order": "pair",
        }
        out = tmp_path / method
        stage(
            "preference",
            "--params",
            json.dumps(p),
            "--pairs",
            str(tmp_path / "rankings.parquet"),
            "--reference",
            str(tmp_path / "ref.parquet"),
            "--policy",
            str(policy_dir),
            "--model",
            str(out / "model"),
            "--metrics",
            str(out / "metrics.csv"),
        )
        metrics = pd.read_csv(out / "metrics.csv")
        assert metrics["reward_accuracy"].dropna().iloc[-1] > 0.9, method
        steps = len(metrics) - 1
        assert steps == 5 * (12 if method == "dpo_ranked" else 2), (
            method
        )  # 48 pairs or 8 prompts, batch 4
        assert load_file(out / "model" / "model.safetensors")
