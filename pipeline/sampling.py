"""Ancestral sampling from a policy, batched, with the logit warping it was drawn with.

Default: pure sampling (temperature 1, top_k 0, top_p 1), the distribution whose log-probs the
trainers and the evaluation compute. The sampling loop is ours, not `generate`, so that left
padding, position ids, the random generator and the logit warping are explicit and shared: the
sample stage, the trainers' rollouts and monitors, the evaluation and Best-of-N all draw here.
"""

import pandas as pd
import torch
import torch.nn.functional as F

from pipeline.config import Sample
from pipeline.logprobs import left_pad
from pipeline.logs import progress
from pipeline.models import autocast


def warp_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
    """The sampling distribution's logits: temperature, then top-k, then nucleus (top-p) filtering.

    Identity at the defaults. Anything that measures log-probs of samples drawn with other
    settings must apply the same warping.
    """
    if temperature != 1.0:
        logits = logits / temperature
    if top_k > 0 and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token once the mass before it already reaches top_p; the first always stays
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def categorical(logits: torch.Tensor, generator: torch.Generator, block: int = 256) -> torch.Tensor:
    """One draw per row from softmax(logits), (B, V) -> (B,): one uniform per row, inverted
    through the cumulative distribution in two levels (which block of `block` entries, then which
    entry in it).

    `torch.multinomial` draws an exponential variate for every vocabulary entry of every row, most
    of a decoding step's cost beside a small model (217 ms at 128 x 49,152 on 2 cores; this: 22).
    The running sums are float64 and short (the block masses, then one block's entries), so a rare
    token late in a 50k vocabulary keeps its mass, which one float32 running sum over the whole
    vocabulary would round away."""
    rows, vocab = logits.shape
    weights = (logits - logits.amax(-1, keepdim=True)).exp()  # unnormalised: the draw scales u
    if vocab % block:
        weights = F.pad(weights, (0, -vocab % block))
    weights = weights.view(rows, -1, block)
    mass = weights.sum(-1).double().cumsum(-1)  # (B, blocks): mass up to each block's end
    zero = torch.zeros((rows, 1), dtype=torch.float64, device=logits.device)
    u = torch.rand((rows, 1), generator=generator, dtype=torch.float64, device=logits.device)
    # u stays below the total, so that the block and the entry found hold mass (never a padding
    # entry or a token the warp removed), also where rounding brings u up to the total
    u = torch.minimum(u * mass[:, -1:], torch.nextafter(mass[:, -1:], zero))
    b = torch.searchsorted(mass, u, right=True)  # the first block whose end passes u
    u = u - torch.cat([zero, mass], -1).gather(-1, b)
    within = weights[torch.arange(rows, device=logits.device), b.squeeze(-1)].double().cumsum(-1)
    i = torch.searchsorted(
        within, torch.minimum(u, torch.nextafter(within[:, -1:], zero)), right=True
    )
    return (b * block + i).squeeze(-1)


@torch.no_grad()
def sample(
    model,
    prompts: list[list[int]],
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator,
    temperature=1.0,
    top_k=0,
    top_p=1.0,
) -> list[list[int]]:
    """One completion per prompt; each is cut after its first EOS (the EOS is kept)."""
    dev = next(model.parameters()).device
    start = left_pad(prompts, [[] for _ in prompts], pad_id).to(dev)
    ids, mask, pos = start.input_ids, start.attention_mask, start.position_ids
    done = torch.zeros(len(prompts), dtype=torch.bool, device=dev)
    out, cache, step_ids = [], None, ids
    for _ in range(max_new_tokens):
        with autocast(dev):
            res = model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=pos,
                cache=cache,
                use_cache=True,
            )
        cache = res.cache
        logits = warp_logits(res.logits[:, -1].float(), temperature, top_k, top_p)
        nxt = categorical(logits, generator)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        out.append(nxt)
        done |= nxt == eos_id
        if done.all():
            break
        step_ids = nxt.unsqueeze(-1)
        mask = torch.cat([mask, torch.ones_like(step_ids)], dim=-1)
        pos = pos[:, -1:] + 1
    tokens = torch.stack(out, dim=-1).tolist()
    return [row[: row.index(eos_id) + 1] if eos_id in row else row for row in tokens]


def sample_table(model, tok, prompts: pd.DataFrame, p: Sample) -> pd.DataFrame:
    """`n_per_prompt` samples of every prompt, batched; one row per sample."""
    rows = [
        (r.prompt_id, k, list(r.prompt_ids))
        for r in prompts.itertuples()
        for k in range(p.n_per_prompt)
    ]
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(p.seed)
    completions = []
    bs = p.batch_size
    for start in progress(range(0, len(rows), bs), desc="sample", unit="batch"):
        chunk = [r[2] for r in rows[start : start + bs]]
        completions += sample(
            model,
            chunk,
            p.max_new_tokens,
            tok.eos_token_id,
            tok.pad_token_id,
            gen,
            p.temperature,
            p.top_k,
            p.top_p,
        )
    eos = tok.eos_token_id
    return pd.DataFrame(
        {
            "prompt_id": [r[0] for r in rows],
            "sample_id": [r[1] for r in rows],
            "prompt_ids": [r[2] for r in rows],
            "completion_ids": completions,
            "ended": [bool(c) and c[-1] == eos for c in completions],
            "completion": tok.batch_decode(completions, skip_special_tokens=True),
            # the scored text: prompt and completion decoded together, as the DPO paper scores it
            "text": tok.batch_decode(
                [r[2] + c for r, c in zip(rows, completions)], skip_special_tokens=True
            ),
        }
    )
