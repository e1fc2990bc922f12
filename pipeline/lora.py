"""LoRA adapters (Hu et al. 2021, through `peft`): the field's way to fine-tune a pretrained policy.

With `policy.lora` set, SFT and every trainer freeze the policy's weights W and train, on each
target module, a low-rank update W + (alpha / r) B A (A: r x in, B: out x r, B zero at the start,
so the adapted policy starts as the model it was given). What this buys:
- a training step computes no gradient for the frozen weights (about a third of its FLOPs) and
  the optimiser holds state for the adapters only;
- pi_ref is the same model with its adapters switched off (`AdapterDisabled`), as TRL's DPO and
  PPO trainers do, so no second copy of the policy is held.
What is saved is always a plain model folder: the adapters merged into the weights (`merged`), so
evaluation and every later stage read it as they read any policy.
"""

import copy

import torch

from pipeline.config import Lora


def adapt(model: torch.nn.Module, lora: Lora | None) -> torch.nn.Module:
    """The policy with fresh adapters on `lora.target_modules`, only they trainable; without
    `lora`, the model itself."""
    if lora is None:
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ValueError("policy.lora needs the `peft` package: pip install -e '.[lora]'") from None

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        target_modules=lora.target_modules,
        lora_dropout=0.0,  # the trainers' log-probs must be the policy's own (no dropout)
        bias="none",
        # GPT-2's projections are Conv1D, whose weight is stored (in, out)
        fan_in_fan_out=any(type(m).__name__ == "Conv1D" for m in model.modules()),
    )
    return get_peft_model(model, config)


def adapted(model: torch.nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "merge_and_unload")


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters an optimiser updates: the adapters (and any head beside them) under LoRA."""
    return [t for t in model.parameters() if t.requires_grad]


class AdapterDisabled:
    """pi_ref beside an adapted policy: the same model called with its adapters switched off, i.e.
    the frozen weights it started from. Not a module of its own, so that `eval()` or
    `requires_grad_(False)` on pi_ref cannot reach the policy's adapters."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def __call__(self, **inputs):
        with self.model.disable_adapter():
            return self.model(**inputs)

    def parameters(self):
        return self.model.parameters()

    def eval(self):
        return self

    def requires_grad_(self, requires_grad: bool = True):
        return self

    def to(self, device):
        return self


def reference(policy: torch.nn.Module, load):
    """pi_ref for a trainer that needs it live (PPO, the online methods): the adapted policy with
    its adapters off, or a frozen second copy (`load()`) under full fine-tuning."""
    if adapted(policy):
        return AdapterDisabled(policy)
    return load().eval().requires_grad_(False)


def merged(model: torch.nn.Module, keep: bool = False) -> torch.nn.Module:
    """A plain causal LM whose weights hold the adapters' update, as saved; `keep` merges a copy
    and leaves the adapted model as it is (a point along a run whose training goes on)."""
    if not adapted(model):
        return model
    return (copy.deepcopy(model) if keep else model).merge_and_unload()
