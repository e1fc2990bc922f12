"""Stage `tokenizer`: the policy's tokenizer, saved as a transformers tokenizer folder.

From scratch (policy.init = "scratch"): a byte-level BPE, as GPT-2's, trained with `tokenizers` on
the SFT text. Otherwise the pretrained policy's own tokenizer, copied so that every later stage
reads one folder.
"""

import pandas as pd
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from pipeline import cli, io
from pipeline.config import borrow, record
from pipeline.logs import get_logger
from pipeline.safe_loading import load_tokenizer
from pipeline.settings import read

log = get_logger("tokenizer")

EOS = "<|endoftext|>"


@record
class Settings:
    """The `tokenizer` rule's settings (a GGUF init replaced by the pretrained rule's model
    folder): a pretrained policy's tokenizer is copied; from scratch, a BPE is trained here."""

    init: borrow("policy.init")
    vocab_size: borrow("policy.vocab_size")
    n_positions: borrow("policy.n_positions")


def train_bpe(texts, vocab_size: int, model_max_length: int) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer, length=len(texts))
    # GPT-2's convention: one special token serves as BOS, EOS and padding.
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
        padding_side="left",
        model_max_length=model_max_length,
    )


def main(argv=None):
    args = cli.parse(__doc__, ["sft"], ["out"], argv)
    p = read(Settings, args.params, "tokenizer")
    if p.init == "scratch":
        texts = pd.read_parquet(args.sft, columns=["text"])["text"].tolist()
        log.info("training a byte-level BPE (vocab %d) on %d reviews", p.vocab_size, len(texts))
        tok = train_bpe(texts, p.vocab_size, p.n_positions)
    else:
        tok = load_tokenizer(p.init, "policy.init")
    with io.atomic_output(args.out) as tmp:
        tok.save_pretrained(tmp)
    log.info("tokenizer with %d tokens -> %s", len(tok), args.out)


if __name__ == "__main__":
    cli.run(main)
