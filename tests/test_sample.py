import math

import pandas as pd
import torch

from pipeline.sampling import Settings, sample, sample_table, warp_logits


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
