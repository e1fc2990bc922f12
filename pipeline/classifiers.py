"""The rewards that are models, scored in batches on the device: a Hugging Face sequence
classifier's p(positive) (`reward.backend: hf`; siebert at paper scale) and the RLHF route's
learned reward (`reward_model`: the model, its saved form and its scorer; the stage
pipeline.stages.reward_model trains it). pipeline.rewards builds them; this module is apart so
that the VADER default's score stage does not load torch and transformers.
"""

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForSequenceClassification

from pipeline.logprobs import Batch, left_pad
from pipeline.logs import progress
from pipeline.models import autocast, device, scalar_head
from pipeline.safe_loading import from_pretrained_safe, load_classifier_tokenizer, load_tokenizer

HEAD_FILE = "reward_head.safetensors"


class RewardModel(torch.nn.Module):
    """A transformer trunk plus a scalar head on the last position; `forward` gives raw rewards."""

    def __init__(self, trunk):
        super().__init__()
        self.trunk = trunk
        self.head = scalar_head(trunk.config.hidden_size)
        # the standardisation statistics, saved with the head
        self.register_buffer("reward_mean", torch.zeros(()))
        self.register_buffer("reward_std", torch.ones(()))

    def forward(self, batch: Batch) -> torch.Tensor:
        hidden = self.trunk(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
        ).last_hidden_state
        # the head in fp32 even under bf16 autocast: rewards are compared, standardised, fed to PPO
        with torch.autocast(hidden.device.type, enabled=False):
            return self.head(hidden[:, -1].float()).squeeze(-1)

    def standardised(self, batch: Batch) -> torch.Tensor:
        return (self(batch) - self.reward_mean) / self.reward_std


def head_state(model: RewardModel) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("trunk.")}


def save_reward_model(model: RewardModel, tok, folder) -> None:
    """The trunk (safetensors) and tokenizer as a transformers folder, the head beside them."""
    model.trunk.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in head_state(model).items()},
        str(Path(folder) / HEAD_FILE),
    )


def load_reward_model(folder: str, key: str) -> RewardModel:
    """A reward model saved by `save_reward_model`, in eval mode, from safetensors only."""
    head_path = Path(folder).expanduser() / HEAD_FILE
    if not head_path.is_file():
        raise FileNotFoundError(
            f"{key} '{folder}': no {HEAD_FILE}; expected a folder written by the reward_model stage"
        )
    model = RewardModel(
        from_pretrained_safe(AutoModel.from_pretrained, str(folder), key, use_safetensors=True)
    )
    head = load_file(str(head_path))
    expected = set(head_state(model))
    if set(head) != expected:
        raise ValueError(
            f"{key} '{folder}': {HEAD_FILE} holds {sorted(head)}, expected {sorted(expected)}"
        )
    try:
        model.load_state_dict(head, strict=False)  # the trunk is loaded already
    except RuntimeError as err:
        raise ValueError(f"{key} '{folder}': {HEAD_FILE} does not fit the trunk ({err})") from None
    return model.eval()


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
                out.append(self.score_batch(texts[start : start + self.batch_size]).float().cpu())
        return torch.cat(out).double().numpy()


class ClassifierScorer(BatchedScorer):
    """p(positive) of any sequence classifier: the softmax over all its classes (two in either
    order, or negative/neutral/positive), read at the class named `positive_label` (any case).
    Texts are cut at the classifier's own `model_max_length` or `max_length`, the smaller."""

    def __init__(self, name: str, positive_label: str, batch_size: int, max_length: int):
        self.dev = device()
        self.tok = load_classifier_tokenizer(name, "reward.model")
        self.model = (
            from_pretrained_safe(
                AutoModelForSequenceClassification.from_pretrained,
                name,
                "reward.model",
                use_safetensors=True,
            )
            .to(self.dev)
            .eval()
        )
        if self.model.config.pad_token_id is None:  # GPT-2's head finds the last token by it
            self.model.config.pad_token_id = self.tok.pad_token_id
        labels = {str(v).lower(): int(k) for k, v in self.model.config.id2label.items()}
        if positive_label.lower() not in labels:
            raise ValueError(
                f"reward.positive_label '{positive_label}' is not a label of"
                f" {name}; its labels are {sorted(self.model.config.id2label.values())}"
            )
        self.positive = labels[positive_label.lower()]
        self.batch_size = batch_size
        self.max_length = min(max_length, self.tok.model_max_length)

    def score_batch(self, texts: list[str]) -> torch.Tensor:
        enc = self.tok(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.dev)
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
        ids = self.tok(
            texts, add_special_tokens=False, truncation=True, max_length=self.max_length
        )["input_ids"]
        # left padding with positions from the mask: the head reads each text's last token
        batch = left_pad([[]] * len(ids), ids, self.tok.pad_token_id).to(self.dev)
        return self.model.standardised(batch)
