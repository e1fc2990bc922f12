"""Pairs that share responses: each distinct response is run once, with the same losses,
gradients and pi_ref log-probs as running every pair's two sequences; batches keep a prompt's
pairs together."""

import copy

import pandas as pd
import pytest
import torch
from conftest import shared_pairs

from pipeline.batching import Epochs, distinct_responses, epoch_order, pair_batch
from pipeline.logprobs import (
    forward_logits,
    left_pad,
    next_token_logprobs,
    response_logprobs,
    token_logprobs,
)
from pipeline.losses import ce_loss, cringe_gate, cringe_token_loss, dpo_loss, pairwise_cringe_loss
from pipeline.stages.reference import reference_logps
from pipeline.steps import cringe_step, loss_step


def two_sequences_per_pair(pairs, pad_id):
    """The batch without sharing: every chosen, then every rejected sequence."""
    prompts = pairs["prompt_ids"].tolist() * 2
    return left_pad(prompts, pairs["chosen_ids"].tolist() + pairs["rejected_ids"].tolist(), pad_id)


def test_distinct_responses_index_every_row_and_column():
    pairs = shared_pairs(3)
    prompts, responses, index = distinct_responses(pairs, ["chosen_ids", "rejected_ids"])
    assert len(prompts) == 12 and index.shape == (2, 12)  # 3 prompts x 4 samples, 12 pairs
    for j, column in enumerate(["chosen_ids", "rejected_ids"]):
        for i, row in pairs.iterrows():
            assert (prompts[index[j, i]], responses[index[j, i]]) == (
                row["prompt_ids"],
                row[column],
            )
    # the same response after another prompt is another sequence
    other = pd.DataFrame({"prompt_ids": [[5], [6]], "chosen_ids": [[20], [20]]})
    assert distinct_responses(other, ["chosen_ids"])[2].tolist() == [[0, 1]]


def test_a_dpo_step_on_distinct_responses_equals_two_sequences_per_pair(policy, tokenizer):
    pad = tokenizer.pad_token_id
    pairs = shared_pairs(3)
    ref = torch.randn(2, len(pairs), dtype=torch.float64)
    shared, naive = copy.deepcopy(policy), copy.deepcopy(policy)
    batch, index = pair_batch(pairs, pad)
    loss, _ = loss_step(dpo_loss)(shared, batch, index, ref, {"beta": 0.5}, None)
    loss.sum().backward()
    logps = response_logprobs(naive, two_sequences_per_pair(pairs, pad))
    n = len(pairs)
    naive_loss = dpo_loss(logps[:n], logps[n:], ref[0], ref[1], 0.5)
    naive_loss.sum().backward()
    assert len(batch.input_ids) == 12 < 2 * n
    torch.testing.assert_close(loss, naive_loss)
    for (name, a), b in zip(shared.named_parameters(), naive.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_a_cringe_step_draws_per_pair_as_with_two_sequences_per_pair(policy, tokenizer):
    pad = tokenizer.pad_token_id
    pairs = shared_pairs(3)
    p = {"b": 0.0, "tau": 1.0, "k": 3, "gate_ce": True}
    batch, index = pair_batch(pairs, pad)
    loss, stats = cringe_step(policy, batch, index, None, p, torch.Generator().manual_seed(0))
    naive = two_sequences_per_pair(pairs, pad)
    logits = forward_logits(policy, naive)
    token_logps = token_logprobs(next_token_logprobs(logits), naive)
    n = len(pairs)
    gate = cringe_gate(token_logps[:n].sum(-1), token_logps[n:].sum(-1), 0.0, 1.0)
    cr = cringe_token_loss(
        logits[n:, :-1],
        naive.input_ids[n:, 1:],
        naive.response_mask[n:],
        3,
        torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(stats["cringe"], cr.detach())
    torch.testing.assert_close(loss, pairwise_cringe_loss(gate, ce_loss(token_logps[:n]), cr))


def test_reference_logps_of_distinct_responses_equal_each_row_alone(policy, tokenizer):
    pad = tokenizer.pad_token_id
    pairs = shared_pairs(3)
    table = reference_logps(policy, pairs, pad, batch_size=5)
    with torch.no_grad():
        for side in ("chosen", "rejected"):
            alone = torch.stack(
                [
                    response_logprobs(policy, left_pad([p], [r], pad))[0]
                    for p, r in zip(pairs["prompt_ids"], pairs[f"{side}_ids"])
                ]
            )
            torch.testing.assert_close(
                torch.tensor(table[f"ref_{side}"].to_numpy()), alone.double(), rtol=1e-5, atol=1e-5
            )


@pytest.mark.parametrize("seed", [0, 1])
def test_prompt_order_keeps_each_prompts_rows_together(seed):
    prompt_ids = pd.Series([3, 3, 3, 7, 7, 1, 1, 1, 1, 9])
    order = epoch_order(prompt_ids, "prompt", torch.Generator().manual_seed(seed))
    assert sorted(order.tolist()) == list(range(10))
    visited = prompt_ids[order.numpy()].tolist()
    runs = [k for i, k in enumerate(visited) if i == 0 or visited[i - 1] != k]
    assert sorted(runs) == [1, 3, 7, 9]  # one run per prompt
    assert all(order[i] < order[i + 1] for i in range(9) if visited[i] == visited[i + 1])


def test_the_prompt_order_is_random_and_pair_order_shuffles_rows():
    prompt_ids = pd.Series(range(40)).floordiv(4)
    orders = {
        tuple(epoch_order(prompt_ids, "prompt", torch.Generator().manual_seed(s)).tolist())
        for s in range(5)
    }
    assert len(orders) == 5
    pair = epoch_order(prompt_ids, "pair", torch.Generator().manual_seed(0))
    visited = prompt_ids[pair.numpy()].tolist()
    assert sum(a != b for a, b in zip(visited, visited[1:])) > 20  # prompts interleaved


@pytest.mark.parametrize("stop", [3, 5, 6])
def test_epochs_resumed_from_their_state_give_the_uninterrupted_rows(stop):
    """A new order every epoch, each row once per epoch; a job resumed from a checkpoint's
    state (mid-epoch or at an epoch's end) trains on the rows it would have trained on."""
    prompt_ids = pd.Series(range(12)).floordiv(2)
    whole = Epochs(prompt_ids, "prompt", 4, torch.Generator().manual_seed(0))
    rows = [whole.rows(step) for step in range(9)]
    assert [e for e, _ in rows] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for epoch in range(3):
        seen = torch.cat([r for e, r in rows if e == epoch]).tolist()
        assert sorted(seen) == list(range(12))
    assert rows[0][1].tolist() != rows[3][1].tolist()
    first = Epochs(prompt_ids, "prompt", 4, torch.Generator().manual_seed(0))
    for step in range(stop):
        first.rows(step)
    resumed = Epochs(prompt_ids, "prompt", 4, torch.Generator().manual_seed(1))
    resumed.restore(first.state())
    for step in range(stop, 9):
        assert resumed.rows(step)[1].tolist() == rows[step][1].tolist()
