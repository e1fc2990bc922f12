import torch
import torch.nn.functional as F

from pipeline.logprobs import (
    forward_logits,
    forward_logprobs,
    left_pad,
    next_token_logprobs,
    response_logprobs,
    token_logprobs,
)


def test_response_logprobs_alone_equal_inside_left_padded_batch(policy):
    target = ([5, 17, 42], [7, 8, 9, 10, 11])
    others = [([3], [4, 6]), ([20, 21, 22, 23, 24, 25, 26, 27], [30, 31, 32, 33, 34, 35, 36])]
    with torch.no_grad():
        alone = response_logprobs(policy, left_pad([target[0]], [target[1]], pad_id=0))
        batch = left_pad(
            [target[0]] + [p for p, _ in others], [target[1]] + [r for _, r in others], 0
        )
        assert batch.attention_mask[0, 0] == 0, "the target row must actually be padded"
        padded = response_logprobs(policy, batch)
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=0)


def test_prompt_tokens_are_masked_and_sum_matches_chain_rule(policy):
    prompt, response = [5, 17, 42], [7, 8, 9]
    batch = left_pad([prompt], [response], pad_id=0)
    assert batch.response_mask.sum() == len(response)
    with torch.no_grad():
        total = response_logprobs(policy, batch)[0]
        ids = torch.tensor([prompt + response])
        logp = torch.log_softmax(policy(ids).logits[0].float(), -1)
    by_hand = sum(logp[len(prompt) - 1 + t, tok] for t, tok in enumerate(response))
    torch.testing.assert_close(total, by_hand, atol=1e-5, rtol=0)


def test_token_logprobs_are_zero_outside_the_response(policy):
    batch = left_pad([[1, 2], [3]], [[4], [5, 6, 7]], pad_id=0)
    with torch.no_grad():
        per_token = token_logprobs(forward_logprobs(policy, batch), batch)
    assert (per_token[~batch.response_mask] == 0).all()
    assert (per_token[batch.response_mask] < 0).all()


def test_token_logprobs_and_their_gradient_equal_the_cross_entropys_exactly(policy):
    """The log-softmax over all positions, read at the targets, is -cross_entropy of the shifted
    logits to the last bit, forward and backward: the trainers' numbers do not depend on which."""
    batch = left_pad([[1, 2], [3]], [[4], [5, 6, 7]], pad_id=0)
    weights = torch.tensor([0.7, -1.3])

    def run(logps_of):
        policy.zero_grad()
        logps = logps_of(forward_logits(policy, batch))
        (logps.sum(-1) * weights).sum().backward()
        return logps.detach(), [w.grad.clone() for w in policy.parameters()]

    def fused(logits):
        targets = batch.input_ids[:, 1:]
        logp = -F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), reduction="none")
        return torch.where(batch.response_mask, logp.view_as(targets), 0.0)

    ours, ours_grad = run(lambda logits: token_logprobs(next_token_logprobs(logits), batch))
    theirs, theirs_grad = run(fused)
    policy.zero_grad(set_to_none=True)
    assert torch.equal(ours, theirs)
    assert all(torch.equal(a, b) for a, b in zip(ours_grad, theirs_grad))
