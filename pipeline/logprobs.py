"""Per-token and per-sequence response log-probs from token ids, exact under left padding.

log pi(y | x) = sum_t log pi(y_t | x, y_<t): the sum runs over the response tokens only; prompt
and padding tokens are masked. The trainers and the evaluation all go through `token_logprobs`.
"""

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T), prompt + response, left padded
    attention_mask: torch.Tensor  # (B, T), 1 on real tokens
    position_ids: torch.Tensor  # (B, T), 0 at each sequence's first real token
    response_mask: (
        torch.Tensor
    )  # (B, T - 1), 1 where target input_ids[:, t + 1] is a response token

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device) for t in vars(self).values()))

    def select(self, rows: torch.Tensor) -> "Batch":
        return Batch(*(t[rows] for t in vars(self).values()))


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted from each row's first real token, so left padding does not shift them."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def left_pad(prompts: list[list[int]], responses: list[list[int]], pad_id: int) -> Batch:
    """Right-align each prompt + response in one (B, T) batch."""
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
    width = max(lengths)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    resp = torch.zeros((len(prompts), width), dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        start = width - lengths[i]
        ids[i, start:] = torch.tensor(p + r, dtype=torch.long)
        mask[i, start:] = 1
        resp[i, start + len(p) :] = True
    return Batch(ids, mask, position_ids(mask), resp[:, 1:])


def forward_logits(model, batch: Batch) -> torch.Tensor:
    """The model's fp32 logits at every position, (B, T, V): position t scores token t + 1."""
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    )
    return out.logits.float()


def next_token_logprobs(logits: torch.Tensor) -> torch.Tensor:
    """log pi(v | y_<=t) at every position that has a next token: (B, T - 1, V).

    The log-softmax runs over all T positions and the last is dropped after, as a view: dropping it
    first would copy the largest tensor of a step (and its gradient) to make it contiguous."""
    return torch.log_softmax(logits, -1)[:, :-1]


def forward_logprobs(model, batch: Batch) -> torch.Tensor:
    return next_token_logprobs(forward_logits(model, batch))


def token_logprobs(logprobs: torch.Tensor, batch: Batch) -> torch.Tensor:
    """log pi(y_t | y_<t) of each target token, from `next_token_logprobs`; 0 outside the
    response. Shape (B, T - 1)."""
    logp = logprobs.gather(-1, batch.input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    # where, not multiply: padded rows may hold non-finite values that 0 * x would keep.
    return torch.where(batch.response_mask, logp, torch.zeros_like(logp))


def response_logprobs(model, batch: Batch) -> torch.Tensor:
    """log pi(y | x), summed over the response tokens. Shape (B,)."""
    return token_logprobs(forward_logprobs(model, batch), batch).sum(-1)
