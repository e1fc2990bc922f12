"""The ground-truth reward, p(positive sentiment) of a text, behind one interface (`Scorer`):
- `vader`: VADER's compound score c in [-1, 1] mapped to p = (c + 1) / 2 (offline default);
- `hf`: a Hugging Face sequence classifier (hub id or local folder; siebert at paper scale),
  p(positive) = softmax(logits)[the label named `reward.positive_label`];
- the RLHF route's learned reward (pipeline.classifiers), standardised, for ppo_rm.
The last two are models (pipeline.classifiers), loaded only when the config names them. The score
stage, the trainers' rollouts and monitors, the evaluation and Best-of-N all score through it.
"""

from typing import Protocol

import numpy as np

from pipeline.config import Reward


class Scorer(Protocol):
    def __call__(self, texts: list[str]) -> np.ndarray: ...


class VaderScorer:
    def __init__(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def __call__(self, texts: list[str]) -> np.ndarray:
        compound = [self.analyzer.polarity_scores(t)["compound"] for t in texts]
        return (np.asarray(compound, dtype=np.float64) + 1.0) / 2.0


def check_finite_scores(scores: np.ndarray, texts: list[str]) -> np.ndarray:
    """`scores`, after refusing a NaN or infinite one, named by its sample and text."""
    if not np.isfinite(scores).all():
        bad = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise FloatingPointError(f"the reward is not finite for sample {bad}: {texts[bad]!r}")
    return scores


def make_scorer(p: Reward, reward_model: str | None = None) -> Scorer:
    """The true reward of config section `reward`; or, given the folder of the reward model the
    study trained (ppo_rm), that learned reward, read with the section's batch size and length."""
    if p.backend == "vader" and reward_model is None:
        return VaderScorer()
    # here, not at the top: torch and transformers take ~3 s to load, which VADER never needs
    from pipeline.classifiers import ClassifierScorer, RewardModelScorer

    if reward_model is not None:
        return RewardModelScorer(reward_model, p.batch_size, p.max_length)
    if not p.model:
        raise ValueError("reward.model is required when reward.backend is 'hf'")
    return ClassifierScorer(p.model, p.positive_label, p.batch_size, p.max_length)
