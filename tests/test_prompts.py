import pandas as pd

from pipeline.stages.prompts import make_prompts


def test_prompts_are_2_to_8_token_prefixes_and_seeded(tokenizer, reviews):
    df = reviews.rename_axis("review_id").reset_index()
    a = make_prompts(df, tokenizer, 2, 8, seed=0)
    b = make_prompts(df, tokenizer, 2, 8, seed=0)
    assert a.equals(b)
    lengths = a["prompt_ids"].map(len)
    assert lengths.between(2, 8).all() and lengths.nunique() > 1
    full = {
        r.review_id: tokenizer(r.text, add_special_tokens=False)["input_ids"]
        for r in df.itertuples()
    }
    for r in a.itertuples():
        assert list(r.prompt_ids) == full[r.review_id][: len(r.prompt_ids)]


def test_reviews_shorter_than_their_prompt_are_skipped(tokenizer):
    df = pd.DataFrame({"review_id": [0, 1], "text": ["Hi", "A long enough review text here."]})
    out = make_prompts(df, tokenizer, 3, 3, seed=0)
    assert out["review_id"].tolist() == [1]
