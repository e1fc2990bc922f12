"""Optimisers and learning-rate schedules shared by the trainers."""

import math

import torch


def make_optimizer(params, name: str, lr: float, weight_decay: float = 0.0):
    """AdamW, or RMSprop as the DPO paper uses for its policies."""
    params = list(params)
    if name == "adamw":
        # fused on CUDA: one kernel for all parameters instead of a launch per tensor; on CPU the
        # foreach form, which gives the per-tensor loop's numbers to the bit with less Python
        # per step (fused changes the last bits)
        cuda = params[0].is_cuda
        return torch.optim.AdamW(
            params,
            lr=lr,
            weight_decay=weight_decay,
            betas=(0.9, 0.95),
            fused=cuda,
            foreach=not cuda,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer '{name}' (adamw or rmsprop)")


def warmup_constant(step: int, warmup: int, lr: float) -> float:
    """Linear warmup over `warmup` steps, then constant (the DPO reference schedule)."""
    return lr * min(1.0, (step + 1) / max(1, warmup))


def warmup_cosine(step: int, total: int, warmup: int, lr: float) -> float:
    """Linear warmup, then cosine decay to 10% of `lr` at step `total`."""
    if step < warmup:
        return warmup_constant(step, warmup, lr)
    frac = (step - warmup) / max(1, total - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def check_finite(loss: torch.Tensor, stage: str, step: int, batch: str) -> None:
    """Stop the run at the first non-finite loss or reward, naming the step and the batch."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(f"{stage}: non-finite value at step {step} ({batch})")
