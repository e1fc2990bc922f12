"""Stage `evaluate`: sentiment and KL(pi || pi_ref) of one policy on the held-out prompts.

For each evaluation prompt the policy draws `samples_per_prompt` completions by pure ancestral
sampling (temperature 1, top_k 0, top_p 1: the distribution whose log-probs are measured). Per
sample:
- `score`: the true reward, p(positive) of prompt + completion;
- `kl`: KL(pi || pi_ref) = sum over response positions t of the exact
  sum_v pi(v | x, y_<t) (log pi(v | x, y_<t) - log pi_ref(v | x, y_<t)), every term >= 0
  (the DPO paper's footnote-3 sequence KL, on the policy's own samples);
- `kl_k1`: the single-sample log-ratio estimate sum_t log pi(y_t) - log pi_ref(y_t), same samples;
- `length`: response tokens.
Beside it, on pi_ref's own evaluation samples, the reverse KL(pi_ref || pi), exact per position
(`reverse_kl.parquet`). The summary adds distinct-2 (distinct token bigrams / bigrams over all
completions), a guard against degenerate text.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pipeline import cli, io
from pipeline.logprobs import forward_logprobs, left_pad, token_logprobs
from pipeline.logs import get_logger
from pipeline.models import autocast, device, load_causal_lm
from pipeline.safe_loading import load_tokenizer
from pipeline.sample import Settings as Sampling
from pipeline.sample import sample_table
from pipeline.score import Reward, make_scorer
from pipeline.settings import read

log = get_logger("evaluate")


@dataclass(frozen=True)
class Settings:
    """The `evaluate` rule's settings (config section `evaluate`, with reward and
    sample.max_new_tokens)."""

    n_prompts: int  # evaluation prompts (the first n of the held-out prompts)
    samples_per_prompt: int  # pure samples the policy draws per prompt
    max_new_tokens: int  # a sample's length limit, as in training's samples
    batch_size: int  # sequences per batch, sampling and KL alike
    seed: int  # the random generator of the samples
    reward: Reward  # the ground-truth reward that scores the samples


def token_kl(logp: torch.Tensor, logq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Exact KL(p || q) over the vocabulary at each position, from both distributions' log-probs
    (B, T, V); 0 outside `mask`. Shape (B, T)."""
    kl = (logp.exp() * (logp - logq)).sum(-1).clamp(min=0.0)  # >= 0; clamp only rounding error
    return torch.where(mask, kl, torch.zeros_like(kl))


@torch.no_grad()
def kl_measures(policy, ref, prompts, completions, pad_id: int, batch_size: int) -> dict:
    """Per-sequence exact KL(policy || ref) and the k1 log-ratio estimate, on the given samples.
    pi_ref's own evaluation passes the same model twice: it runs once (its KL is 0 either way)."""
    dev = next(policy.parameters()).device
    exact, k1 = [], []
    for start in range(0, len(prompts), batch_size):
        batch = left_pad(
            prompts[start : start + batch_size], completions[start : start + batch_size], pad_id
        ).to(dev)
        with autocast(dev):
            lp = forward_logprobs(policy, batch)
            lq = lp if ref is policy else forward_logprobs(ref, batch)
        exact.append(token_kl(lp, lq, batch.response_mask).sum(-1).double().cpu())
        k1.append((token_logprobs(lp, batch) - token_logprobs(lq, batch)).sum(-1).double().cpu())
    return {"kl": torch.cat(exact).numpy(), "kl_k1": torch.cat(k1).numpy()}


def distinct_2(completions: list[list[int]]) -> float:
    bigrams = [tuple(c[i : i + 2]) for c in completions for i in range(len(c) - 1)]
    return len(set(bigrams)) / max(1, len(bigrams))


def draw(
    policy, tok, prompts: pd.DataFrame, n: int, batch_size: int, max_new_tokens: int, seed: int
) -> pd.DataFrame:
    """`n` pure samples of each prompt from the evaluated policy, with their lengths."""
    pure = Sampling(
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


def main(argv=None):
    args = cli.parse(
        __doc__,
        ["prompts", "policy", "reference", "ref_samples"],
        ["samples", "reverse_kl", "summary"],
        argv,
        optional=("ref_samples",),
    )
    p = read(Settings, args.params, "evaluate")
    dev = device()
    prompts = select_prompts(args.prompts, p.n_prompts)
    tok = load_tokenizer(args.policy, "policy")
    policy = load_causal_lm(args.policy, "policy").to(dev).eval()
    ref = policy if args.policy == args.reference else load_causal_lm(args.reference, "reference")
    ref = ref.to(dev).eval()
    if ref is not policy and len(tok) != len(load_tokenizer(args.reference, "reference")):
        raise ValueError(f"{args.policy} and {args.reference} do not share a vocabulary")

    samples = draw(
        policy,
        tok,
        prompts,
        p.samples_per_prompt,
        p.batch_size,
        p.max_new_tokens,
        p.seed,
    )
    samples["score"] = make_scorer(p.reward)(samples["text"].tolist())
    prompt_ids, completion_ids = samples["prompt_ids"].tolist(), samples["completion_ids"].tolist()
    for name, values in kl_measures(
        policy, ref, prompt_ids, completion_ids, tok.pad_token_id, p.batch_size
    ).items():
        samples[name] = values

    # Reverse KL(pi_ref || pi) needs pi_ref's samples: pi_ref's own evaluation provides them.
    if args.ref_samples:
        ref_samples = io.read_parquet(
            args.ref_samples, ["prompt_id", "sample_id", "prompt_ids", "completion_ids"]
        )
    elif args.policy == args.reference:
        ref_samples = samples
    else:
        raise ValueError(
            "--ref-samples (pi_ref's evaluation samples) is required unless the"
            " evaluated policy is the reference"
        )
    reverse = kl_measures(
        ref,
        policy,
        [list(x) for x in ref_samples["prompt_ids"]],
        [list(x) for x in ref_samples["completion_ids"]],
        tok.pad_token_id,
        p.batch_size,
    )
    reverse_kl = ref_samples[["prompt_id", "sample_id"]].assign(kl_reverse=reverse["kl"])

    summary = {
        "n": len(samples),
        "n_prompts": len(prompts),
        "sentiment": samples["score"].mean(),
        "kl": samples["kl"].mean(),
        "kl_k1": samples["kl_k1"].mean(),
        "kl_reverse": reverse_kl["kl_reverse"].mean(),
        "length": samples["length"].mean(),
        "distinct_2": distinct_2(completion_ids),
    }
    if not np.isfinite(list(summary.values())).all():
        raise FloatingPointError(f"non-finite evaluation of {args.policy}: {summary}")
    io.write_parquet(samples, args.samples)
    io.write_parquet(reverse_kl, args.reverse_kl)
    io.write_json(summary, args.summary)
    log.info(
        "%s: sentiment %.3f, KL %.2f (k1 %.2f, reverse %.2f), length %.1f, distinct-2 %.3f",
        args.policy,
        summary["sentiment"],
        summary["kl"],
        summary["kl_k1"],
        summary["kl_reverse"],
        summary["length"],
        summary["distinct_2"],
    )


if __name__ == "__main__":
    cli.run(main)
