import json
import re

import pandas as pd
import pytest

from pipeline.stages import data


def test_clean_text_strips_html_and_whitespace():
    assert data.clean_text("Great<br /><br />film &amp;  fun\n") == "Great film & fun"


@pytest.mark.parametrize("suffix", ["parquet", "csv", "jsonl"])
def test_local_file_sources(tmp_path, reviews, suffix):
    path = tmp_path / f"reviews.{suffix}"
    {
        "parquet": lambda: reviews.to_parquet(path),
        "csv": lambda: reviews.to_csv(path, index=False),
        "jsonl": lambda: reviews.to_json(path, orient="records", lines=True),
    }[suffix]()
    df = data.load_reviews("file", str(path), ["train"])
    assert len(df) == len(reviews) and list(df.columns) == ["text", "label"]


def test_file_without_text_column_is_refused(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"review": ["a"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="no `text` column"):
        data.load_reviews("file", str(path), ["train"])


def test_labels_other_than_0_1_name_the_row():
    df = pd.DataFrame({"text": ["good", "bad"], "label": [1, "neg"]})
    with pytest.raises(ValueError, match="row 1 has 'neg'"):
        data.clean(df, "test")


def test_clean_drops_empty_and_duplicate_reviews():
    df = pd.DataFrame({"text": ["<br />", "Nice.", "Nice.", None, "Bad."], "label": pd.NA})
    out = data.clean(df, "test")
    assert out["text"].tolist() == ["Nice.", "Bad."]
    assert out["review_id"].tolist() == [0, 1]


def test_split_is_disjoint_and_deterministic(reviews):
    pool = data.clean(
        pd.DataFrame({"text": [f"review number {i}" for i in range(50)], "label": pd.NA}), "test"
    )
    a = data.split_reviews(pool, n_train=10, n_eval=5, max_sft=None, seed=1)
    b = data.split_reviews(pool, n_train=10, n_eval=5, max_sft=None, seed=1)
    for x, y in zip(a, b):
        assert x.equals(y)
    sft, train, ev = (set(s["review_id"]) for s in a)
    assert len(train) == 10 and len(ev) == 5 and len(sft) == 35
    assert not (sft & train or sft & ev or train & ev)


def test_split_with_a_separate_eval_pool_drops_overlap():
    pool = data.clean(pd.DataFrame({"text": [f"r{i}" for i in range(20)], "label": pd.NA}), "p")
    eval_pool = data.clean(pd.DataFrame({"text": ["r0", "r1", "e2", "e3"], "label": pd.NA}), "e")
    sft, train, ev = data.split_reviews(pool, 5, 4, None, 0, eval_pool)
    assert set(ev["text"]) == {"r0", "r1", "e2", "e3"}
    assert not set(sft["text"]) & set(ev["text"]) and not set(train["text"]) & set(ev["text"])


def test_too_few_reviews_for_the_prompts_requested():
    pool = data.clean(pd.DataFrame({"text": [f"r{i}" for i in range(10)], "label": pd.NA}), "p")
    with pytest.raises(ValueError, match="fewer than the 12 prompts requested"):
        data.split_reviews(pool, n_train=8, n_eval=4, max_sft=None, seed=0)


def test_embedded_source_is_the_imdb_train_split():
    df = data.load_reviews("embedded", None, ["train"])
    assert len(df) == 25_000
    assert df["label"].value_counts().to_dict() == {0: 12_500, 1: 12_500}
    assert df["text"].str.contains("<br />").any(), "raw IMDb text still has its HTML"


def test_hf_source_from_a_local_dataset_folder(tmp_path, reviews):
    folder = tmp_path / "imdb"
    folder.mkdir()
    reviews.to_parquet(folder / "train.parquet")
    reviews.head(3).to_parquet(folder / "test.parquet")
    df = data.read_hf(str(folder), ["train", "test"])
    assert len(df) == len(reviews) + 3


def test_hf_source_offline_says_the_hub_is_unreachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="hub is unreachable"):
        data.read_hf("stanfordnlp/imdb", ["train"])


def test_an_empty_file_is_named(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(ValueError, match=f"data file {path} cannot be read"):
        data.load_reviews("file", str(path), ["train"])


def test_bytes_that_are_not_utf8_are_named(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text\nun film très réussi\n".encode("latin-1"))
    with pytest.raises(ValueError, match=f"data file {path} is not UTF-8 text"):
        data.load_reviews("file", str(path), ["train"])


def test_rows_that_are_empty_or_only_html_are_dropped_and_too_few_remain():
    df = pd.DataFrame({"text": ["<br /><br />", "  ", "<p></p>", "A real review."], "label": pd.NA})
    pool = data.clean(df, "test")
    assert pool["text"].tolist() == ["A real review."]
    with pytest.raises(ValueError, match="the data has 1 usable reviews"):
        data.split_reviews(pool, n_train=1, n_eval=1, max_sft=None, seed=0)


def test_a_review_of_several_megabytes_is_cut():
    df = pd.DataFrame({"text": ["great " * 1_000_000, "short"], "label": pd.NA})
    out = data.clean(df, "test", max_chars=20_000)
    assert out["text"].str.len().max() <= 20_000 and len(out) == 2


def test_the_hub_imdb_layout_loads_with_its_unlabeled_split(hub_inputs):
    """stanfordnlp/imdb as the hub serves it: `unsupervised` marks every row -1 (no label)."""
    folder = str(hub_inputs["imdb"])
    pool = data.clean(data.load_reviews("hf", folder, ["train", "unsupervised"]), "data")
    test = data.clean(data.read_hf(folder, ["test"]), "test")
    assert pool["label"].isna().sum() == 200 and set(pool["label"].dropna()) == {0, 1}
    assert len(pool) == 160 + 200 - 1  # one duplicate within train
    assert not pool["text"].str.contains("<br").any()
    sft, train, ev = data.split_reviews(pool, 40, 12, None, 0, test)
    assert not set(ev["text"]) & (set(sft["text"]) | set(train["text"]))  # one review in both


@pytest.mark.parametrize("label", [-1, None, float("nan")])
def test_unlabeled_rows_keep_a_null_label(label):
    out = data.clean(pd.DataFrame({"text": ["good", "bad"], "label": [1, label]}), "test")
    assert out["label"].tolist()[0] == 1 and out["label"].isna().tolist() == [False, True]


def test_the_stage_refuses_a_misspelt_or_mistyped_setting_before_any_work(tmp_path):
    """What the rule passes is checked against what the stage reads: a key it does not know
    (here a misspelling) or a value of the wrong type stops it, naming the stage and the key."""
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"text": [f"review number {i}" for i in range(20)]}).to_csv(path, index=False)
    params = {
        "source": "file",
        "path": str(path),
        "split": "train",
        "eval_split": None,
        "n_train_prompts": 5,
        "n_eval_prompts": 3,
        "max_sft_reviews": None,
        "seed": 0,
    }

    def run(p, out):
        files = [[f"--{name}", str(out / f"{name}.parquet")] for name in ("sft", "train", "eval")]
        data.main(["--params", json.dumps(p)] + sum(files, []))

    run(params, tmp_path / "good")
    assert len(pd.read_parquet(tmp_path / "good/eval.parquet")) == 3
    misspelt = {("n_train_prompt" if k == "n_train_prompts" else k): v for k, v in params.items()}
    expected = "data: missing setting(s) ['n_train_prompts']; unknown setting(s) ['n_train_prompt']"
    with pytest.raises(ValueError, match=re.escape(expected)):
        run(misspelt, tmp_path / "misspelt")
    with pytest.raises(ValueError, match=re.escape("data.n_eval_prompts = '3': expected int")):
        run(params | {"n_eval_prompts": "3"}, tmp_path / "mistyped")
    assert not (tmp_path / "misspelt").exists() and not (tmp_path / "mistyped").exists()
