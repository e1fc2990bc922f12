"""Loading and building models, safely: safetensors only, never remote code (tokenizers:
pipeline.safe_loading)."""

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
from pipeline.safe_loading import from_pretrained_safe

# Snakemake sets OMP_NUM_THREADS to a rule's `threads`, which may exceed the cores this process
# may use; more torch threads than cores makes every op slower, so cap them.
torch.set_num_threads(max(1, min(torch.get_num_threads(), len(os.sched_getaffinity(0)))))


# GPT-2's "gelu_new" is the tanh approximation written as seven elementwise ops; torch's
# gelu(approximate="tanh") is the same function in one kernel.
FAST_GELU = "gelu_pytorch_tanh"


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(dev: torch.device):
    """bf16 autocast on CUDA; fp32 on CPU, where bf16 is several times slower."""
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")


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
