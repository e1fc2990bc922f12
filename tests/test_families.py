"""Every causal LM family a user brings as policy.init treats special tokens alike: GPT-2 (bos = eos
= pad), SmolLM2's Llama (bos <|im_start|>, eos = pad <|im_end|>), a Llama whose tokenizer adds its
BOS (as Llama 3's does) and Qwen2 (no BOS, its own pad token, attention biases, more embedding
rows than tokens). Prompts and SFT reviews start with a BOS exactly where the tokenizer adds one;
a response's log-probs hold its own tokens and its EOS, never a BOS, a padding or a prompt token."""

import hub_formats
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import Sample as Sampling
from pipeline.logprobs import left_pad, response_logprobs
from pipeline.measures import final_states, kl_measures
from pipeline.models import load_causal_lm
from pipeline.safe_loading import bos_ids, load_tokenizer
from pipeline.sampling import sample, sample_table
from pipeline.stages.prompts import make_prompts
from pipeline.stages.sft import encode

ADDS_BOS = {"gpt2": False, "smollm2": False, "llama_bos": True, "qwen2": False}


@pytest.fixture(scope="module", params=sorted(hub_formats.POLICIES))
def family(request, tmp_path_factory):
    folder = hub_formats.POLICIES[request.param](tmp_path_factory.mktemp(request.param))
    tok = load_tokenizer(str(folder), "policy.init")
    return request.param, tok, load_causal_lm(str(folder), "policy.init").eval()


def test_a_bos_is_added_exactly_where_the_tokenizer_adds_one(family):
    name, tok, _ = family
    assert bos_ids(tok) == ([tok.bos_token_id] if ADDS_BOS[name] else [])


def test_prompts_hold_the_drawn_number_of_text_tokens_after_the_bos(family):
    name, tok, _ = family
    reviews = pd.DataFrame({"review_id": range(8), "text": hub_formats.imdb_reviews()["text"][:8]})
    prompts = make_prompts(reviews, tok, 2, 8, seed=0)
    bos = bos_ids(tok)
    for ids, text in zip(prompts["prompt_ids"], prompts["prompt"]):
        assert ids[: len(bos)] == bos and 2 <= len(ids) - len(bos) <= 8
        assert not set(ids[len(bos) :]) & set(tok.all_special_ids)
        assert "<|" not in text  # the readable prompt shows no special token


def test_sft_reviews_start_with_the_bos_and_end_with_eos_not_padding(family):
    name, tok, _ = family
    texts = ["A short review.", "word " * 200]
    short, long = encode(tok, texts, 24)
    bos = bos_ids(tok)
    assert short[: len(bos)] == bos and short[-1] == tok.eos_token_id
    assert len(long) == 24 and long[: len(bos)] == bos and tok.eos_token_id not in long
    if name == "qwen2":
        assert tok.pad_token_id != tok.eos_token_id  # Qwen2's own pad token, not its EOS


def test_response_logprobs_alone_equal_inside_a_left_padded_batch(family):
    """Left padding with the family's pad id, positions counted from each row's first token (RoPE
    for Llama and Qwen2), the prompt's BOS masked, the response's EOS counted once."""
    name, tok, model = family
    bos, eos = bos_ids(tok), tok.eos_token_id
    target = (bos + [40, 41, 42], [50, 51, 52, eos])
    others = [(bos + [43], [60, eos]), (bos + list(range(70, 80)), list(range(80, 92)))]
    with torch.no_grad():
        alone = response_logprobs(model, left_pad([target[0]], [target[1]], tok.pad_token_id))
        batch = left_pad(
            [target[0]] + [p for p, _ in others],
            [target[1]] + [r for _, r in others],
            tok.pad_token_id,
        )
        assert batch.attention_mask[0, 0] == 0 and batch.response_mask[0].sum() == len(target[1])
        padded = response_logprobs(model, batch)
        ids = torch.tensor([target[0] + target[1]])
        logp = torch.log_softmax(model(ids).logits[0].float(), -1)
    by_hand = sum(logp[len(target[0]) - 1 + t, y] for t, y in enumerate(target[1]))
    torch.testing.assert_close(alone[0], by_hand, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=0)


def test_cached_sampling_continues_alone_as_in_a_left_padded_batch(family):
    """Greedy decoding through the KV cache: a wrong position or mask changes the argmax path."""
    name, tok, model = family
    bos, gen = bos_ids(tok), torch.Generator().manual_seed(0)
    short, long = bos + [45, 46], bos + list(range(30, 40))
    alone = sample(model, [short], 10, tok.eos_token_id, tok.pad_token_id, gen, top_k=1)
    batched = sample(model, [long, short], 10, tok.eos_token_id, tok.pad_token_id, gen, top_k=1)
    assert batched[1] == alone[0]


def test_samples_end_at_eos_and_their_text_shows_no_special_token(family):
    name, tok, model = family
    bos = bos_ids(tok)
    prompts = pd.DataFrame({"prompt_id": [0, 1], "prompt_ids": [bos + [40, 41], bos + [42]]})
    table = sample_table(
        model,
        tok,
        prompts,
        Sampling(
            n_per_prompt=16,
            max_new_tokens=12,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            batch_size=32,
            seed=0,
        ),
    )
    for ids, ended in zip(table["completion_ids"], table["ended"]):
        assert tok.eos_token_id not in ids[:-1] and ended == (ids[-1] == tok.eos_token_id)
    assert not table["text"].str.contains("<|im_", regex=False).any()


def test_exact_kl_is_zero_against_itself_and_positive_against_another_policy(family):
    name, tok, model = family
    bos = bos_ids(tok)
    prompts = [bos + [40, 41], bos + [42, 43, 44]]
    completions = sample(
        model, prompts, 8, tok.eos_token_id, tok.pad_token_id, torch.Generator().manual_seed(0)
    )
    twin = load_causal_lm(model.name_or_path, "policy").eval()
    same = kl_measures(twin, model, prompts, completions, tok.pad_token_id, 2)
    assert (same["kl"] == 0).all() and (same["kl_k1"] == 0).all()
    other = load_causal_lm(model.name_or_path, "policy").eval()
    with torch.no_grad():
        for weight in other.parameters():
            weight.add_(0.05 * torch.randn_like(weight))
    kl = kl_measures(other, model, prompts, completions, tok.pad_token_id, 2)["kl"]
    assert (kl > 0).all()


def test_the_reverse_kl_from_pi_refs_final_states_is_the_one_from_its_whole_pass(family):
    """pi_ref's side of every reverse KL comes from its final hidden states through its output
    layer (tied to the input embedding or not): the same KL and k1 as its whole forward pass."""
    name, tok, model = family
    bos = bos_ids(tok)
    prompts = [bos + [40, 41], bos + [42, 43, 44], bos + [45]]
    completions = sample(
        model, prompts, 6, tok.eos_token_id, tok.pad_token_id, torch.Generator().manual_seed(0)
    )
    other = load_causal_lm(model.name_or_path, "policy").eval()
    with torch.no_grad():
        for weight in other.parameters():
            weight.add_(0.05 * torch.randn_like(weight))
    states = final_states(model, prompts, completions, tok.pad_token_id, 2)
    assert states.shape == (sum(map(len, completions)), model.config.hidden_size)
    whole = kl_measures(model, other, prompts, completions, tok.pad_token_id, 2)
    cached = kl_measures(model, other, prompts, completions, tok.pad_token_id, 2, states)
    for key in ("kl", "kl_k1"):
        np.testing.assert_allclose(cached[key], whole[key], rtol=1e-4, atol=1e-5)
    assert (whole["kl"] > 0).all()


def test_ppo_value_head_reads_each_family_and_its_log_probs_are_the_policys(family):
    """PPO's policy-with-value on the family: the policy's own next-token log-probs, and one value
    per position from its last hidden state, the same for a row alone and left-padded."""
    from pipeline.logprobs import next_token_logprobs
    from pipeline.stages.ppo import PolicyWithValue

    name, tok, model = family
    bos, eos = bos_ids(tok), tok.eos_token_id
    model_with_value = PolicyWithValue(model)
    torch.nn.init.normal_(model_with_value.value_head.weight)  # not zero: values must differ
    target, other = (bos + [40, 41], [50, 51, eos]), (bos + list(range(70, 78)), [80, 81, eos])
    with torch.no_grad():
        alone = left_pad([target[0]], [target[1]], tok.pad_token_id)
        padded = left_pad([target[0], other[0]], [target[1], other[1]], tok.pad_token_id)
        logps, values = model_with_value(alone)
        logps_padded, values_padded = model_with_value(padded)
        own = next_token_logprobs(
            model(input_ids=alone.input_ids, position_ids=alone.position_ids).logits.float()
        )
    n = alone.input_ids.shape[1] - 1
    assert values.shape == (1, n) and values.abs().sum() > 0
    torch.testing.assert_close(logps, own, atol=1e-5, rtol=0)
    torch.testing.assert_close(logps_padded[0, -n:], logps[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(values_padded[0, -n:], values[0], atol=1e-4, rtol=0)
