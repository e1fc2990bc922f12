"""Sampling from the policy being trained and scoring it: `rollout` (completions and their
reward), which the preference trainer's reward monitor uses, and `collect` (a whole rollout with
the policy's and pi_ref's token log-probs and, with a value head, its values), which PPO and the
online methods use; with the settings they share (`Section`, the ppo config section) and their
start (`policy_and_reference`).
"""

import numpy as np
import torch

from pipeline import io
from pipeline.config import Ppo, Trainer, borrow, given, record
from pipeline.distributed import SINGLE, World
from pipeline.logprobs import forward_logprobs, left_pad, next_token_logprobs, token_logprobs
from pipeline.lora import Lora, adapt, reference
from pipeline.models import autocast, device, load_causal_lm, scalar_head
from pipeline.rewards import check_finite_scores
from pipeline.safe_loading import load_tokenizer
from pipeline.sampling import sample


@torch.no_grad()
def rollout(
    model,
    tok,
    prompts: list[list[int]],
    scorer,
    max_new_tokens: int,
    generator: torch.Generator,
    batch_size: int = 256,
):
    """Pure ancestral samples (one per prompt) and their scores: (completions, scores)."""
    was_training = model.training
    model.eval()
    completions = []
    for start in range(0, len(prompts), batch_size):
        completions += sample(
            model,
            prompts[start : start + batch_size],
            max_new_tokens,
            tok.eos_token_id,
            tok.pad_token_id,
            generator,
        )
    model.train(was_training)
    texts = tok.batch_decode(
        [p + c for p, c in zip(prompts, completions)], skip_special_tokens=True
    )
    return completions, check_finite_scores(np.asarray(scorer(texts), dtype=np.float64), texts)


@record
class Section(Ppo, Trainer):
    """The ppo section's settings, with what the rule adds: PPO's, and the online methods' (which
    take their optimiser and rollouts from it and leave the KL controller and value head)."""

    method: str = given(
        "ppo (the true reward) or ppo_rm (the learned one); the online method's name"
    )
    seed: int = given("the job's seed, one of train.seeds: prompts, minibatches and samples")
    reward_model: str | None = given(
        "ppo_rm: the folder of the reward model the study trained, which scores the samples in"
        " place of the true reward",
        None,
    )
    sample_batch_size: borrow("sample.batch_size")


class PolicyWithValue(torch.nn.Module):
    """The policy plus a scalar value head reading its last hidden state: (next-token log-probs
    as pipeline.logprobs.next_token_logprobs gives them, values), both (B, T - 1, ...)."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy
        self.value_head = scalar_head(policy.config.hidden_size)

    def forward(self, batch):
        out = self.policy(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
            output_hidden_states=True,
        )
        values = self.value_head(out.hidden_states[-1][:, :-1].float()).squeeze(-1)
        return next_token_logprobs(out.logits.float()), values


def policy_forward(model, batch):
    """(next-token log-probs, values) of a policy with a value head; (log-probs, None) of a plain
    one (the online methods without a critic: GRPO, RLOO, online DPO)."""
    if isinstance(model, PolicyWithValue):
        return model(batch)
    return forward_logprobs(model, batch), None


@torch.no_grad()
def score_rollout(model, ref, batch, chunk: int):
    """Token log-probs under the rollout policy and pi_ref, and values (None without a value
    head), `chunk` rows at a time (a whole rollout's logits over a 50k vocabulary would not fit
    in memory at paper scale)."""
    dev = batch.input_ids.device
    out = []
    for rows in torch.arange(len(batch.input_ids), device=dev).split(chunk):
        sub = batch.select(rows)
        with autocast(dev):
            logprobs, values = policy_forward(model, sub)
            ref_logprobs = forward_logprobs(ref, sub)
        out.append((token_logprobs(logprobs, sub), token_logprobs(ref_logprobs, sub), values))
    return tuple(None if parts[0] is None else torch.cat(parts) for parts in zip(*out))


def collect(
    model,
    ref,
    tok,
    prompts: list[list[int]],
    scorer,
    p: Section,
    generator: torch.Generator,
    world: World = SINGLE,
):
    """One rollout, for PPO and the online methods: this process samples, scores and evaluates
    (log-probs, pi_ref's log-probs, values if the model has a value head) its share of
    `prompts`; every process returns the whole rollout, in prompt order:
    (batch, scores, old_logps, ref_logps, values)."""
    dev = next(model.parameters()).device
    mine = prompts[world.rank :: world.size]
    completions, scores = rollout(
        getattr(model, "policy", model),
        tok,
        mine,
        scorer,
        p.max_new_tokens,
        generator,
        p.sample_batch_size,
    )
    completions = world.interleave(completions)
    scores = torch.tensor(world.interleave(scores.tolist()), dtype=torch.float64, device=dev)
    batch = left_pad(prompts, completions, tok.pad_token_id).to(dev)
    own = batch.select(torch.arange(world.rank, len(prompts), world.size, device=dev))
    parts = score_rollout(model, ref, own, p.minibatch_size)
    return (batch, scores, *(None if t is None else world.interleave_tensor(t) for t in parts))


def training_prompts(path) -> list[list[int]]:
    prompts = [list(x) for x in io.read_parquet(path, ["prompt_ids"])["prompt_ids"]]
    if not prompts:
        raise ValueError(f"{path}: no training prompts")
    return prompts


def policy_and_reference(folder: str, lora: Lora | None):
    """The tokenizer, the policy to train (on the device) and pi_ref beside it, frozen: PPO's and
    the online methods' start. Under LoRA, pi_ref is the policy with its adapters off."""
    dev = device()
    tok = load_tokenizer(folder, "policy")
    policy = adapt(load_causal_lm(folder, "policy"), lora).to(dev)
    ref = reference(policy, lambda: load_causal_lm(folder, "policy").to(dev))
    return tok, policy, ref
