"""Loading from the hub or a folder, safely: never remote code; and tokenizers.

Kept free of torch for the stages that need only a tokenizer (tokenizer, prompts): transformers'
Auto classes import torch (through their model configs), a few seconds of every stage's start.
"""

import json
from pathlib import Path

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from pipeline.artifacts import REBUILD
from pipeline.sources import HUB_UNREACHABLE, hub_offline, model_source


def from_pretrained_safe(loader, name: str, key: str, **kwargs):
    source = model_source(name, key)
    if source == "local" and not Path(name).expanduser().is_dir():
        raise FileNotFoundError(f"{key}: '{name}' is a file; expected a Hugging Face model folder")
    try:
        return loader(name, trust_remote_code=False, **kwargs)
    except OSError as err:
        if source == "hub" and (
            hub_offline() or "connect" in str(err).lower() or "offline" in str(err).lower()
        ):
            raise FileNotFoundError(f"{key} '{name}': " + HUB_UNREACHABLE.format(key=key)) from None
        why = f"{key} '{name}': cannot load it: {str(err).strip()}"
        raise FileNotFoundError(why + (f"; {REBUILD}" if source == "local" else "")) from None


# The tokenizers-library class as transformers 5 names it in tokenizer_config.json (what the
# tokenizer stage saves), and its older name, an alias of it.
TOKENIZERS_BACKEND = {"TokenizersBackend", "PreTrainedTokenizerFast"}


def tokenizer_loader(name: str):
    """The loader AutoTokenizer would pick, without importing torch where that is plain: a folder
    holding only a tokenizer (no model config, which could name another class), whose
    tokenizer_config.json names the tokenizers-library class and no custom code, is that class's
    own from_pretrained. Anything else goes through AutoTokenizer."""
    folder = Path(name).expanduser()
    config = folder / "tokenizer_config.json"
    if folder.is_dir() and config.is_file() and not (folder / "config.json").exists():
        declared = json.loads(config.read_text())
        if declared.get("tokenizer_class") in TOKENIZERS_BACKEND and "auto_map" not in declared:
            return PreTrainedTokenizerFast.from_pretrained
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained


def load_tokenizer(
    name: str, key: str, model_max_length: int | None = None
) -> PreTrainedTokenizerBase:
    """A causal LM's tokenizer: left padding (generation appends to the right end), and pad = EOS
    when it has no pad token, as GPT-2's has none. `model_max_length` replaces the folder's."""
    kwargs = {"padding_side": "left"}
    if model_max_length is not None:
        kwargs["model_max_length"] = model_max_length
    tok = from_pretrained_safe(tokenizer_loader(name), name, key, **kwargs)
    if tok.eos_token_id is None:
        raise ValueError(f"{key} '{name}': the tokenizer has no EOS token")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_classifier_tokenizer(name: str, key: str) -> PreTrainedTokenizerBase:
    """A sequence classifier's tokenizer, as its model was trained with: its own special tokens
    (BERT's [CLS] ... [SEP], RoBERTa's <s> ... </s>, added when encoding; no EOS needed) and
    right padding, since a classifier reads its first token or its last real one. Only a
    tokenizer without a pad token (GPT-2's) pads with its EOS."""
    tok = from_pretrained_safe(tokenizer_loader(name), name, key, padding_side="right")
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise ValueError(f"{key} '{name}': the tokenizer has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token
    return tok


def bos_ids(tok: PreTrainedTokenizerBase) -> list[int]:
    """The ids this tokenizer puts before every text it encodes with its special tokens: [BOS]
    for one that adds it (Llama 3's), none for GPT-2's, SmolLM2's or Qwen2's. A prompt and an SFT
    review start with them, as the model saw its text in pretraining; the stages encode text
    without special tokens and add these themselves, so that no EOS a tokenizer may append
    ends up inside a prompt."""
    probe = ["A review"]
    [plain] = tok(probe, add_special_tokens=False)["input_ids"]
    [special] = tok(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(special) - len(plain) + 1):
        if special[start : start + len(plain)] == plain:
            return special[:start]
    raise ValueError(
        f"the tokenizer's special tokens change the text's own tokens: {special} against {plain}"
    )
