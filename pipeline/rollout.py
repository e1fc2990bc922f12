"""Sample completions from a policy and score them with the ground-truth reward.

PPO's rollouts and the preference trainer's reward monitor both go through `rollout`.
"""

import numpy as np
import torch

from pipeline.sample import sample
from pipeline.score import check_finite_scores


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
