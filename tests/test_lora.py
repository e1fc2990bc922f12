"""LoRA adapters (policy.lora) on every family a user brings: only the adapters train, pi_ref is
the base model with them switched off (its log-probs unchanged, no second copy), and the saved
policy is a plain model folder whose log-probs are the adapted policy's."""

import hub_formats
import pandas as pd
import pytest
import torch
from conftest import PAIRWISE_PARAMS, PPO_PARAMS, VADER, train_pairwise

from pipeline.logprobs import left_pad, response_logprobs
from pipeline.loop import save_policy
from pipeline.lora import AdapterDisabled, Lora, adapt, adapted, merged, reference, trainable
from pipeline.models import load_causal_lm
from pipeline.rewards import Reward, make_scorer
from pipeline.safe_loading import bos_ids, load_tokenizer
from pipeline.settings import read
from pipeline.stages import ppo

LORA = {"r": 4, "alpha": 8.0, "target_modules": "all-linear"}


@pytest.fixture(scope="module", params=sorted(hub_formats.POLICIES))
def family(request, tmp_path_factory):
    return request.param, hub_formats.POLICIES[request.param](
        tmp_path_factory.mktemp(request.param)
    )


def batch_of(tok):
    """Two left-padded rows of ordinary tokens with the family's BOS and pad."""
    bos = bos_ids(tok)
    return left_pad(
        [bos + [40, 41, 42], bos + [43]],
        [[50, 51, tok.eos_token_id], [52, 53, 54, 55]],
        tok.pad_token_id,
    )


def test_only_the_adapters_train_and_merging_keeps_the_adapted_policy(family, tmp_path):
    name, folder = family
    tok = load_tokenizer(str(folder), "policy")
    batch = batch_of(tok)
    base = load_causal_lm(str(folder), "policy").eval()
    with torch.no_grad():
        before = response_logprobs(base, batch)
    model = adapt(base, Lora(**LORA))
    names = [n for n, t in model.named_parameters() if t.requires_grad]
    assert names and all("lora_" in n for n in names), names
    assert len(trainable(model)) == len(names)
    with torch.no_grad():
        assert torch.equal(response_logprobs(model, batch), before)  # B = 0: the base at the start
        for n, t in model.named_parameters():
            if "lora_B" in n:
                t.normal_(0, 0.2)  # as training would move them
        moved = response_logprobs(model, batch)
        pi_ref = response_logprobs(AdapterDisabled(model), batch)
        merged_copy = response_logprobs(merged(model, keep=True), batch)
    assert (moved - before).abs().max() > 1e-3, "the adapters change the policy"
    torch.testing.assert_close(pi_ref, before, atol=1e-6, rtol=0)
    torch.testing.assert_close(merged_copy, moved, atol=1e-4, rtol=0)
    assert adapted(model), "keep=True leaves the adapted policy as it was"

    save_policy(model, tok, pd.DataFrame({"step": [1]}), tmp_path / "model", tmp_path / "m.csv")
    saved = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert "adapter_config.json" not in saved and "model.safetensors" in saved
    reloaded = load_causal_lm(str(tmp_path / "model"), "policy").eval()
    assert type(reloaded) is type(base)  # the family's own class, as pi_ref's folder
    assert not any("lora" in n for n, _ in reloaded.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(response_logprobs(reloaded, batch), moved, atol=1e-4, rtol=0)


def test_a_lora_dpo_run_moves_the_policy_through_its_adapters(pair_files, policy_dir, tmp_path):
    params = PAIRWISE_PARAMS | {"method": "dpo", "beta": 0.1, "epochs": 2, "lora": LORA}
    out = tmp_path / "run"
    train_pairwise(params, pair_files, policy_dir, out)
    tok = load_tokenizer(str(policy_dir), "policy")
    batch = batch_of(tok)
    with torch.no_grad():
        start = response_logprobs(load_causal_lm(str(policy_dir), "policy").eval(), batch)
        trained = response_logprobs(load_causal_lm(str(out / "model"), "policy").eval(), batch)
    assert (trained - start).abs().max() > 1e-3


def test_lora_ppo_keeps_no_second_copy_and_pi_ref_stays_the_start(policy_dir):
    """PPO under LoRA: pi_ref is the policy with its adapters off, not a model of its own; after
    training, its log-probs are still those of the model PPO started from."""
    tok = load_tokenizer(str(policy_dir), "policy")
    batch = batch_of(tok)
    policy = adapt(load_causal_lm(str(policy_dir), "policy"), Lora(**LORA))
    ref = reference(policy, lambda: pytest.fail("loaded a second copy of the policy"))
    assert isinstance(ref, AdapterDisabled)
    with torch.no_grad():
        start = response_logprobs(ref, batch)
    p = read(ppo.Settings, PPO_PARAMS | {"iterations": 3, "checkpoint_every": 0}, "train_ppo")
    model = ppo.PolicyWithValue(policy)
    prompts = [[5, 6], [7, 8, 9], [10], [11, 12]]
    ppo.train(model, ref, tok, prompts, make_scorer(read(Reward, VADER, "reward")), p)
    with torch.no_grad():
        torch.testing.assert_close(response_logprobs(ref, batch), start, atol=1e-6, rtol=0)
        assert (response_logprobs(policy, batch) - start).abs().max() > 1e-4
