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
(`reverse_kl.parquet`). pi_ref's side of it is the same in every evaluation: pi_ref's own
evaluation writes its final hidden states there (`--states`), and the others apply pi_ref's output
layer to them (`--ref-states`) instead of running pi_ref over its samples again. The summary adds
distinct-2 (distinct token bigrams / bigrams over all completions), a guard against degenerate
text.
"""

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pipeline import cli, io
from pipeline.config import Evaluate, borrow, record
from pipeline.logs import get_logger
from pipeline.measures import distinct_2, draw, final_states, kl_measures, select_prompts
from pipeline.models import device, load_causal_lm
from pipeline.rewards import make_scorer
from pipeline.safe_loading import load_tokenizer
from pipeline.settings import read

log = get_logger("evaluate")


@record
class Settings(Evaluate):
    """The `evaluate` rule's settings: config section `evaluate`, with the reward that scores the
    samples and sample.max_new_tokens."""

    max_new_tokens: borrow("sample.max_new_tokens")
    reward: borrow("reward")


def main(argv=None):
    args = cli.parse(
        __doc__,
        ["prompts", "policy", "reference", "ref_samples", "ref_states"],
        ["samples", "reverse_kl", "summary", "states"],
        argv,
        optional=("ref_samples", "ref_states", "states"),
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
    ref_prompts = [list(x) for x in ref_samples["prompt_ids"]]
    ref_completions = [list(x) for x in ref_samples["completion_ids"]]
    cached = read_states(args.ref_states, ref_completions) if args.ref_states else None
    reverse = kl_measures(
        ref, policy, ref_prompts, ref_completions, tok.pad_token_id, p.batch_size, cached
    )
    if args.states:
        states = final_states(ref, ref_prompts, ref_completions, tok.pad_token_id, p.batch_size)
        if states is None:
            log.info("%s: logits are not its output layer's: the evaluations run it", args.policy)
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
    if args.states:
        write_states(states, args.states)
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


def write_states(states: torch.Tensor | None, path) -> None:
    """pi_ref's final hidden states, or an empty tensor where they cannot stand in for it."""
    with io.atomic_output(path) as tmp:
        save_file({"states": torch.empty(0, 0) if states is None else states}, str(tmp))


def read_states(path, completions: list[list[int]]) -> torch.Tensor | None:
    """The states `write_states` wrote, one row per response token of pi_ref's samples."""
    states = load_file(str(path))["states"]
    if states.numel() == 0:
        return None
    expected = sum(map(len, completions))
    if states.size(0) != expected:
        raise ValueError(
            f"{path}: {states.size(0)} states, but pi_ref's samples hold {expected} response"
            " tokens; rerun pi_ref's evaluation"
        )
    return states


if __name__ == "__main__":
    cli.run(main)
