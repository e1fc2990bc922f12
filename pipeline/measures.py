"""What an evaluation measures of a policy on the held-out prompts: its pure samples, the exact
KL between two policies at every response position (summed over the response), the single-sample
log-ratio beside it, and distinct-2. The evaluate stage and Best-of-N measure through these.
"""

import pandas as pd
import torch

from pipeline import io
from pipeline.config import Sample
from pipeline.logprobs import forward_logprobs, left_pad, token_logprobs
from pipeline.models import autocast, precision
from pipeline.sampling import sample_table


def token_kl(logp: torch.Tensor, logq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Exact KL(p || q) over the vocabulary at each position, from both distributions' log-probs
    (B, T, V); 0 outside `mask`. Shape (B, T)."""
    kl = (logp.exp() * (logp - logq)).sum(-1).clamp(min=0.0)  # >= 0; clamp only rounding error
    return torch.where(mask, kl, torch.zeros_like(kl))


@torch.no_grad()
def kl_measures(
    policy, ref, prompts, completions, pad_id: int, batch_size: int, states=None
) -> dict:
    """Per-sequence exact KL(policy || ref) and the k1 log-ratio estimate, on the given samples.
    pi_ref's own evaluation passes the same model twice: it runs once (its KL is 0 either way).
    With `states` (`final_states` of `policy` on these samples), the policy's log-probs come from
    its output layer alone: no pass through its body."""
    dev = next(ref.parameters()).device
    exact, k1, used = [], [], 0
    for start in range(0, len(prompts), batch_size):
        batch = left_pad(
            prompts[start : start + batch_size], completions[start : start + batch_size], pad_id
        ).to(dev)
        with autocast(dev):
            if states is None:
                lp = forward_logprobs(policy, batch)
            else:
                n = int(batch.response_mask.sum())
                lp = logprobs_from_states(policy, states[used : used + n].to(dev), batch)
                used += n
            lq = lp if ref is policy else forward_logprobs(ref, batch)
        exact.append(token_kl(lp, lq, batch.response_mask).sum(-1).double().cpu())
        k1.append((token_logprobs(lp, batch) - token_logprobs(lq, batch)).sum(-1).double().cpu())
    return {"kl": torch.cat(exact).numpy(), "kl_k1": torch.cat(k1).numpy()}


def logprobs_from_states(model, states: torch.Tensor, batch) -> torch.Tensor:
    """`next_token_logprobs` of `batch` at its response positions from the model's final hidden
    states there (n, d); 0 elsewhere, which every measure masks."""
    logits = model.get_output_embeddings()(states).float()
    shape = (*batch.response_mask.shape, logits.size(-1))
    out = torch.zeros(shape, dtype=logits.dtype, device=logits.device)
    out[batch.response_mask] = torch.log_softmax(logits, -1)
    return out


@torch.no_grad()
def final_states(model, prompts, completions, pad_id: int, batch_size: int) -> torch.Tensor | None:
    """The model's last hidden states at the positions that predict the response tokens, sample
    after sample, (sum of the completions' lengths, d): what its output layer turns into the
    logits there. None for a model whose logits are not its output layer applied to them (a
    soft cap or a scale after it), whose log-probs then need the whole pass."""
    dev = next(model.parameters()).device
    head, kept = model.get_output_embeddings(), []
    for start in range(0, len(prompts), batch_size):
        batch = left_pad(
            prompts[start : start + batch_size], completions[start : start + batch_size], pad_id
        ).to(dev)
        with autocast(dev):
            out = model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                use_cache=False,
                output_hidden_states=True,
            )
            states = out.hidden_states[-1][:, :-1][batch.response_mask]
            again = head(states).float()
        logits = out.logits[:, :-1][batch.response_mask].float()
        # the same product of the same numbers; a tolerance only for a kernel that blocks it
        # differently at another shape (bf16 rounds each logit to 1 part in 256)
        tol = 1e-2 if precision(dev) == "bf16" else 1e-4
        if not torch.allclose(again, logits, rtol=tol, atol=tol):
            return None
        kept.append(states.float().cpu())
    return torch.cat(kept)


def distinct_2(completions: list[list[int]]) -> float:
    bigrams = [tuple(c[i : i + 2]) for c in completions for i in range(len(c) - 1)]
    return len(set(bigrams)) / max(1, len(bigrams))


def draw(
    policy, tok, prompts: pd.DataFrame, n: int, batch_size: int, max_new_tokens: int, seed: int
) -> pd.DataFrame:
    """`n` pure samples of each prompt from the evaluated policy, with their lengths."""
    pure = Sample(
        n_per_prompt=n,
        max_new_tokens=max_new_tokens,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        batch_size=batch_size,
        seed=seed,
    )
    samples = sample_table(policy, tok, prompts, pure)
    return samples.assign(length=samples["completion_ids"].map(len))


def select_prompts(path, n: int) -> pd.DataFrame:
    prompts = io.read_parquet(path, ["prompt_id", "prompt_ids"])
    if n < 1:
        raise ValueError(f"evaluate.n_prompts = {n}: the evaluation needs at least one prompt")
    if n > len(prompts):
        raise ValueError(f"evaluate.n_prompts = {n} but {path} holds only {len(prompts)} prompts")
    return prompts.head(n)
