"""Loading from the hub or a folder, safely: never remote code; and tokenizers."""

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from pipeline.sources import HUB_UNREACHABLE, hub_offline, model_source


def from_pretrained_safe(loader, name: str, key: str, **kwargs):
    source = model_source(name, key)
    if source == "local" and not Path(name).expanduser().is_dir():
        raise FileNotFoundError(f"{key}: '{name}' is a file; expected a Hugging Face model folder")
    try:
        return loader(name, trust_remote_code=False, **kwargs)
    except OSError as err:
        if source == "hub" and (hub_offline() or "connect" in str(err).lower()
                                or "offline" in str(err).lower()):
            raise FileNotFoundError(f"{key} '{name}': " + HUB_UNREACHABLE.format(key=key)) from None
        raise FileNotFoundError(f"{key} '{name}': cannot load it: {err}") from None


def load_tokenizer(name: str, key: str, model_max_length: int | None = None,
                   padding_side: str = "left") -> PreTrainedTokenizerBase:
    """A tokenizer with pad = EOS when it has none; left padding suits generation, while
    classifiers (which read a fixed position or the last real token) want right padding."""
    kwargs = {"padding_side": padding_side}
    if model_max_length is not None:
        kwargs["model_max_length"] = model_max_length
    tok = from_pretrained_safe(AutoTokenizer.from_pretrained, name, key, **kwargs)
    if tok.eos_token_id is None:
        raise ValueError(f"{key} '{name}': the tokenizer has no EOS token")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok
