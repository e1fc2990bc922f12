"""The SFT stage's reviews: each one's first `sft.max_length` tokens, as encoding it whole gives
them, though only its start is encoded."""

import pytest
from conftest import REVIEWS
from hub_formats import GPT2_TOKENIZER

from pipeline.safe_loading import load_tokenizer
from pipeline.stages.sft import encode

# The test reviews, and texts whose start is cut at an awkward place: runs of spaces and newlines,
# no whitespace at all, shorter than any cut, punctuation and digits at the cut.
TEXTS = REVIEWS + [
    "no-whitespace-at-all" * 60,
    "short one",
    "x",
    "",
    "a  double  spaced\n\nreview, with\ttabs " * 40,
    "1999... 2000!!! (sic) " * 80,
]


def whole(tok, texts, max_length):
    ids = tok(texts, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
    return [t + [tok.eos_token_id] if len(t) < max_length else t for t in ids if len(t) > 1]


@pytest.mark.parametrize("max_length", [4, 16, 64, 1000])
@pytest.mark.parametrize("which", ["embedded default's", "gpt2's"])
def test_a_reviews_start_encodes_to_the_whole_reviews_first_tokens(tokenizer, which, max_length):
    tok = (
        tokenizer
        if which == "embedded default's"
        else load_tokenizer(str(GPT2_TOKENIZER), "policy")
    )
    assert encode(tok, TEXTS, max_length) == whole(tok, TEXTS, max_length)


class LengthTokenizer:
    """Every token says how long the whole text is: no start of a text encodes as the text does,
    as with a tokenizer that merges across whitespace."""

    eos_token_id = 0

    def __call__(self, texts, add_special_tokens, truncation=False, max_length=None):
        return {"input_ids": [[len(t)] * min(max_length or len(t), len(t.split())) for t in texts]}


def test_a_tokenizer_that_does_not_split_at_whitespace_gets_the_whole_reviews():
    texts = ["word " * 500 + str(i) for i in range(3)]
    assert encode(LengthTokenizer(), texts, 8) == [[len(t)] * 8 for t in texts]


class WordTokenizer:
    """One token per whitespace-separated word, its length: long words make a start of
    CHARS_PER_TOKEN characters per token come out short."""

    eos_token_id = 0

    def __call__(self, texts, add_special_tokens, truncation=False, max_length=None):
        return {"input_ids": [[len(w) for w in t.split()][:max_length] for t in texts]}


def test_a_start_that_comes_out_short_is_encoded_whole():
    tok = WordTokenizer()
    texts = ["abcdefghijklmnopqrstuvwxyz " * 100, "ab " * 100, "abc " * 10]
    assert encode(tok, texts, 64) == whole(tok, texts, 64)
    assert len(encode(tok, texts, 64)[0]) == 64
