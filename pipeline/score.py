"""Stage `score`: the ground-truth reward, p(positive sentiment), of every sample.

The scored text is the prompt and the completion decoded together, as the DPO paper scores it
(the prompt alone already carries sentiment; both pi_ref and the trained policies see the same
prompts, so the comparison stays fair). Three backends behind one interface, `Scorer`:
- `vader`: VADER's compound score c in [-1, 1] mapped to p = (c + 1) / 2 (offline default);
- `hf`: a Hugging Face sequence classifier (hub id or local folder; siebert at paper scale),
  p(positive) = softmax(logits)[the label named `reward.positive_label`];
- `reward_model`: the RLHF route's learned reward (pipeline.reward_model), standardised.
"""

from typing import Protocol

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from pipeline import cli, io
from pipeline.logprobs import left_pad
from pipeline.logs import get_logger, progress
from pipeline.models import autocast, device
from pipeline.safe_loading import from_pretrained_safe, load_classifier_tokenizer, load_tokenizer
from pipeline.reward_model import load_reward_model

log = get_logger("score")


class Scorer(Protocol):
    def __call__(self, texts: list[str]) -> np.ndarray: ...


class VaderScorer:
    def __init__(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def __call__(self, texts: list[str]) -> np.ndarray:
        compound = [self.analyzer.polarity_scores(t)["compound"] for t in texts]
        return (np.asarray(compound, dtype=np.float64) + 1.0) / 2.0


class BatchedScorer:
    """`batch_size` texts at a time through `score_batch`, without gradients, in autocast."""

    dev: torch.device
    batch_size: int

    def score_batch(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in progress(range(0, len(texts), self.batch_size), desc="score", unit="batch"):
            with autocast(self.dev):
                out.append(self.score_batch(texts[start:start + self.batch_size]).float().cpu())
        return torch.cat(out).double().numpy()


class ClassifierScorer(BatchedScorer):
    """p(positive) of any sequence classifier: the softmax over all its classes (two in either
    order, or negative/neutral/positive), read at the class named `positive_label` (any case).
    Texts are cut at the classifier's own `model_max_length` or `max_length`, the smaller."""

    def __init__(self, name: str, positive_label: str, batch_size: int, max_length: int):
        self.dev = device()
        self.tok = load_classifier_tokenizer(name, "reward.model")
        self.model = from_pretrained_safe(AutoModelForSequenceClassification.from_pretrained, name,
                                          "reward.model", use_safetensors=True).to(self.dev).eval()
        if self.model.config.pad_token_id is None:  # GPT-2's head finds the last token by it
            self.model.config.pad_token_id = self.tok.pad_token_id
        labels = {str(v).lower(): int(k) for k, v in self.model.config.id2label.items()}
        if positive_label.lower() not in labels:
            raise ValueError(f"reward.positive_label '{positive_label}' is not a label of"
                             f" {name}; its labels are {sorted(self.model.config.id2label.values())}")
        self.positive = labels[positive_label.lower()]
        self.batch_size = batch_size
        self.max_length = min(max_length, self.tok.model_max_length)

    def score_batch(self, texts: list[str]) -> torch.Tensor:
        enc = self.tok(texts, padding=True, truncation=True, max_length=self.max_length,
                       return_tensors="pt").to(self.dev)
        return self.model(**enc).logits.float().softmax(-1)[:, self.positive]


class RewardModelScorer(BatchedScorer):
    """The learned reward (r - mean) / std, mean and std over its training sequences."""

    def __init__(self, folder: str, batch_size: int, max_length: int):
        self.dev = device()
        self.tok = load_tokenizer(folder, "reward.model")
        self.model = load_reward_model(folder, "reward.model").to(self.dev)
        self.batch_size = batch_size
        self.max_length = min(max_length, self.tok.model_max_length)

    def score_batch(self, texts: list[str]) -> torch.Tensor:
        ids = self.tok(texts, add_special_tokens=False, truncation=True,
                       max_length=self.max_length)["input_ids"]
        # left padding with positions from the mask: the head reads each text's last token
        batch = left_pad([[]] * len(ids), ids, self.tok.pad_token_id).to(self.dev)
        return self.model.standardised(batch)


def check_finite_scores(scores: np.ndarray, texts: list[str]) -> np.ndarray:
    """`scores`, after refusing a NaN or infinite one, named by its sample and text."""
    if not np.isfinite(scores).all():
        bad = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise FloatingPointError(f"the reward is not finite for sample {bad}: {texts[bad]!r}")
    return scores


def make_scorer(p: dict) -> Scorer:
    if p["backend"] == "vader":
        return VaderScorer()
    if p["backend"] == "reward_model":
        if not p.get("model"):
            raise ValueError("reward.model is required when reward.backend is 'reward_model'")
        return RewardModelScorer(p["model"], p["batch_size"], p["max_length"])
    if not p.get("model"):
        raise ValueError("reward.model is required when reward.backend is 'hf'")
    return ClassifierScorer(p["model"], p["positive_label"], p["batch_size"], p["max_length"])


def main(argv=None):
    args = cli.parse(__doc__, ["samples"], ["out"], argv)
    scorer = make_scorer(args.params)
    table = io.read_parquet(args.samples, ["text"])
    table["score"] = scorer(table["text"].tolist())
    io.write_parquet(table, args.out)
    log.info("%d samples scored, mean %.3f (sd %.3f) -> %s", len(table), table["score"].mean(),
             table["score"].std(), args.out)


if __name__ == "__main__":
    cli.run(main)
