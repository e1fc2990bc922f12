"""The ground-truth reward, p(positive sentiment) of a text, behind one interface (`Scorer`):
- `vader`: VADER's compound score c in [-1, 1] mapped to p = (c + 1) / 2 (offline default);
- `hf`: a Hugging Face sequence classifier (hub id or local folder; siebert at paper scale),
  p(positive) = softmax(logits)[the label named `reward.positive_label`];
- `reward_model`: the RLHF route's learned reward (pipeline.classifiers), standardised.
The last two are models (pipeline.classifiers), loaded only when the config names them. The score
stage, the trainers' rollouts and monitors, the evaluation and Best-of-N all score through it.
"""

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np


@dataclass(frozen=True)
class Reward:
    """The reward's settings (config section `reward`, or the learned reward's)."""

    backend: Literal["vader", "hf", "reward_model"]
    model: str | None  # hub id or folder of the classifier (hf) or the reward model
    batch_size: int  # texts per forward pass
    max_length: int  # tokens of each text the model reads
    positive_label: str | None = None  # hf: the classifier's label for positive sentiment


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


def learned(p: Reward) -> str | None:
    """The folder of the reward model the study trained, when the reward is one: an input of the
    trainer that a checkpoint depends on (a classifier is a fixed input, VADER has none)."""
    return p.model if p.backend == "reward_model" else None


def make_scorer(p: Reward) -> Scorer:
    if p.backend == "vader":
        return VaderScorer()
    # here, not at the top: torch and transformers take ~3 s to load, which VADER never needs
    from pipeline.classifiers import ClassifierScorer, RewardModelScorer

    if not p.model:
        raise ValueError(f"reward.model is required when reward.backend is '{p.backend}'")
    if p.backend == "reward_model":
        return RewardModelScorer(p.model, p.batch_size, p.max_length)
    if not p.positive_label:
        raise ValueError("reward.positive_label is required when reward.backend is 'hf'")
    return ClassifierScorer(p.model, p.positive_label, p.batch_size, p.max_length)
