"""The sampler: its warps, its draws against the categorical they sample, padding and EOS."""

import math

import pandas as pd
import pytest
import torch
from scipy import stats

from pipeline.config import Sample as Settings
from pipeline.sampling import categorical, sample, sample_table, warp_logits


def test_warp_is_identity_at_pure_sampling_defaults():
    logits = torch.randn(3, 11)
    torch.testing.assert_close(warp_logits(logits), logits)


def test_top_k_and_top_p_keep_the_expected_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(warp_logits(logits, top_k=2)).tolist() == [[True, True, False, False]]
    # nucleus 0.6: 0.5 alone is short of 0.6, so the 0.3 token stays too, and nothing else
    assert torch.isfinite(warp_logits(logits, top_p=0.6)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(warp_logits(logits, top_p=0.5)).tolist() == [[True, False, False, False]]
    warmed = warp_logits(logits, temperature=2.0).softmax(-1)
    torch.testing.assert_close(warmed, (logits / 2).softmax(-1))


def test_greedy_completion_is_the_same_alone_and_in_a_left_padded_batch(policy, tokenizer):
    """top_k=1 makes sampling deterministic: a wrong position id or mask changes the argmax path."""
    gen = torch.Generator().manual_seed(0)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    short, long = [5, 17], [30, 31, 32, 33, 34, 35, 36, 37]
    alone = sample(policy, [short], 12, eos, pad, gen, top_k=1)
    batched = sample(policy, [long, short, [9]], 12, eos, pad, gen, top_k=1)
    assert batched[1] == alone[0]


def test_completions_are_cut_after_eos(policy, tokenizer):
    eos = tokenizer.eos_token_id
    gen = torch.Generator().manual_seed(1)
    outs = sample(policy, [[5, 6]] * 64, 20, eos, tokenizer.pad_token_id, gen)
    assert any(out[-1] == eos for out in outs), "seeded run expected to emit EOS at least once"
    for out in outs:
        assert eos not in out[:-1]
        assert len(out) == 20 or out[-1] == eos


def test_sample_table_is_seeded_and_has_n_samples_per_prompt(policy, tokenizer):
    prompts = pd.DataFrame({"prompt_id": [0, 1, 2], "prompt_ids": [[5, 6], [7, 8, 9], [10, 11]]})
    p = Settings(
        n_per_prompt=4,
        max_new_tokens=6,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        batch_size=5,
        seed=3,
    )
    a, b = sample_table(policy, tokenizer, prompts, p), sample_table(policy, tokenizer, prompts, p)
    assert a.equals(b)
    assert a.groupby("prompt_id").size().tolist() == [4, 4, 4]
    assert a["sample_id"].tolist()[:4] == [0, 1, 2, 3]
    assert all(t.startswith(tokenizer.decode(p)[:2]) for t, p in zip(a["text"], a["prompt_ids"]))
    assert not math.isnan(a["completion_ids"].map(len).mean())


# (temperature, top_k, top_p): pure sampling, then each warp alone and all three together
WARPS = [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 4, 1.0), (1.0, 0, 0.8), (1.5, 6, 0.9)]


@pytest.mark.parametrize("temperature,top_k,top_p", WARPS)
def test_draws_follow_the_categorical_they_sample(temperature, top_k, top_p):
    """200,000 draws over 10 tokens: a chi-square test against softmax(warped logits) passes, a
    token the warp removed is never drawn, and the same test rejects the distribution whose most
    likely token's logit is 0.05 higher (so it has the power to fail)."""
    logits = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0, -3.0, -4.0])
    n = 200_000
    warped = warp_logits(logits.expand(n, -1), temperature, top_k, top_p)
    draws = categorical(warped, torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=len(logits)).numpy()
    expected = warped[0].double().softmax(-1).numpy()
    kept = expected > 0
    assert counts[~kept].sum() == 0
    assert stats.chisquare(counts[kept], n * expected[kept]).pvalue > 1e-3
    off = warped[0].double().clone()
    off[0] += 0.05
    other = off.softmax(-1).numpy()
    assert stats.chisquare(counts[kept], n * other[kept]).pvalue < 1e-6


def test_draws_reach_the_last_tokens_of_a_vocabulary_that_fills_no_whole_block():
    """GPT-2's 50,257 entries, the draw's blocks of 256 padded past the last one: the last 300
    tokens (10% of the mass, in the padded block and the one before it) are drawn as often as
    their mass says, and nothing past the vocabulary is ever drawn."""
    vocab, tail = 50_257, 300
    probs = torch.full((vocab,), 0.1 / tail, dtype=torch.float64)
    probs[: vocab - tail] = 0.9 / (vocab - tail)
    n, gen, rows = 20_000, torch.Generator().manual_seed(1), probs.log().float().expand(500, -1)
    draws = torch.cat([categorical(rows, gen) for _ in range(n // len(rows))])
    assert draws.max() < vocab
    freq = (draws >= vocab - tail).double().mean().item()
    assert abs(freq - 0.1) < 4 * math.sqrt(0.1 * 0.9 / n)
