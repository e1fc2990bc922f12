"""The PPO stage with completions that do not depend on the random generator, so that a run on
several processes (each sampling its share of every rollout) must equal a run on one.

Run as `python tests/ppo_fixed_rollouts.py <the stage's arguments>`, or under torchrun.
"""

import numpy as np

import pipeline.rollout
import pipeline.stages.ppo
from pipeline import cli


def fixed_rollout(model, tok, prompts, scorer, max_new_tokens, generator, batch_size):
    """A completion and its reward that are functions of the prompt alone; lengths vary."""
    vocab = len(tok)
    completions = [
        [(sum(p) * 31 + 17 * k) % (vocab - 1) for k in range(1 + sum(p) % max_new_tokens)]
        for p in prompts
    ]
    texts = tok.batch_decode(
        [p + c for p, c in zip(prompts, completions)], skip_special_tokens=True
    )
    return completions, np.asarray(scorer(texts), dtype=np.float64)


if __name__ == "__main__":
    # collect, which both PPO and the online trainer call, samples through rollout.rollout
    pipeline.rollout.rollout = fixed_rollout
    cli.run(pipeline.stages.ppo.main)
