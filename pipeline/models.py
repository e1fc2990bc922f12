"""Loading and building models, safely: safetensors only, never remote code (tokenizers:
pipeline.safe_loading)."""

import functools
import os
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerBase,
)

from pipeline.artifacts import check_weights
from pipeline.cli import CPU_PRECISION, PRECISIONS
from pipeline.safe_loading import from_pretrained_safe

# Snakemake sets OMP_NUM_THREADS to a rule's `threads`, which may exceed the cores this process
# may use; more torch threads than cores makes every op slower, so cap them.
torch.set_num_threads(max(1, min(torch.get_num_threads(), len(os.sched_getaffinity(0)))))


# GPT-2's "gelu_new" is the tanh approximation written as seven elementwise ops; torch's
# gelu(approximate="tanh") is the same function in one kernel.
FAST_GELU = "gelu_pytorch_tanh"


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# The number format of the matrix products on a CPU: `resources.cpu_precision`, which the stage's
# rule passes as --precision (pipeline.cli). CUDA always runs bf16 autocast. One format for the
# whole process, so that the samples, the training steps and every KL come from the same policy.
@functools.cache
def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bf16 in hardware: x86's AVX512-BF16 or AMX-BF16, Arm's BF16.
    Elsewhere torch emulates bf16, 10-200x slower than fp32 (an AVX2-only EPYC, measured)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux: no way to ask, so no bf16
            return False
    flags = {
        flag
        for line in cpuinfo.splitlines()
        if line.startswith(("flags", "Features"))
        for flag in line.partition(":")[2].split()
    }
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def precision(dev: torch.device) -> str:
    """The number format of the matrix products on `dev`: bf16 on CUDA; on a CPU, the one chosen
    (fp32 unless set; "auto": bf16 where the CPU has bf16 instructions)."""
    if dev.type == "cuda":
        return "bf16"
    chosen = os.environ.get(CPU_PRECISION, "fp32")
    if chosen not in PRECISIONS:
        raise ValueError(f"{CPU_PRECISION} = {chosen!r}: one of {', '.join(PRECISIONS)}")
    if chosen == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return chosen


def autocast(dev: torch.device):
    """bf16 autocast where `precision` says bf16, else fp32. The weights, their gradients and the
    optimiser stay fp32 either way."""
    return torch.autocast(
        device_type=dev.type, dtype=torch.bfloat16, enabled=precision(dev) == "bf16"
    )


def train_mode(
    model: torch.nn.Module, gradient_checkpointing: bool, dropout: bool
) -> torch.nn.Module:
    """Train mode, optionally with activation (gradient) checkpointing, which transformers applies
    only in train mode. `dropout=False` zeroes every dropout rate, for the trainers whose log-probs
    must be those of the policy itself (PPO's ratio, DPO's log-ratios)."""
    if not dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.train()


def load_causal_lm(name: str, key: str) -> torch.nn.Module:
    """A causal LM from a hub id or a folder, from safetensors weights only; a folder whose
    weights are cut short stops here, named."""
    config = from_pretrained_safe(AutoConfig.from_pretrained, name, key)
    if Path(name).expanduser().is_dir():
        check_weights(Path(name).expanduser(), required=False)
    heads = config.architectures or []
    if heads and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in heads):
        raise ValueError(f"{key} '{name}' is not a causal LM (architectures: {heads})")
    if getattr(config, "activation_function", None) == "gelu_new":
        config.activation_function = FAST_GELU
    try:
        return from_pretrained_safe(
            AutoModelForCausalLM.from_pretrained, name, key, config=config, use_safetensors=True
        )
    except ValueError as err:
        raise ValueError(
            f"{key} '{name}': not a causal LM with safetensors weights ({err})"
        ) from None


def scalar_head(hidden_size: int) -> torch.nn.Linear:
    """A linear head from the last hidden state to one number (PPO's value, the learned reward),
    zero at the start: every output 0 until training moves it."""
    head = torch.nn.Linear(hidden_size, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    return head


def build_gpt2(
    tok: PreTrainedTokenizerBase, n_layer: int, n_embd: int, n_head: int, n_positions: int
) -> GPT2LMHeadModel:
    """A GPT-2 initialised from scratch, sized by the config (the embedded default's policy).

    No dropout: it trains for about one epoch, too short to overfit, and dropout slows it down.
    """
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function=FAST_GELU,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return GPT2LMHeadModel(config)
