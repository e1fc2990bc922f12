import json

import numpy as np
import pytest
import torch

from pipeline.classifiers import ClassifierScorer
from pipeline.rewards import Reward, VaderScorer, make_scorer


def test_vader_maps_compound_to_probability():
    scorer = VaderScorer()
    p = scorer(["I love this wonderful movie", "I hate this awful movie", "a movie"])
    compound = [
        scorer.analyzer.polarity_scores(t)["compound"]
        for t in ["I love this wonderful movie", "I hate this awful movie", "a movie"]
    ]
    np.testing.assert_allclose(p, (np.array(compound) + 1) / 2)
    assert p[0] > 0.5 > p[1] and p[2] == 0.5


def test_hf_classifier_returns_p_positive_selected_by_label_name(classifier_dir, tmp_path):
    texts = ["A great film", "A bad film, truly awful and long"]
    p = ClassifierScorer(str(classifier_dir), "POSITIVE", batch_size=1, max_length=16)(texts)
    assert p.shape == (2,) and ((p > 0) & (p < 1)).all()
    # Swap the label names: the same logits now mean the other class, so p becomes 1 - p.
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    for f in classifier_dir.iterdir():
        (swapped / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((swapped / "config.json").read_text())
    cfg["id2label"], cfg["label2id"] = (
        {"0": "POSITIVE", "1": "NEGATIVE"},
        {"POSITIVE": 0, "NEGATIVE": 1},
    )
    (swapped / "config.json").write_text(json.dumps(cfg))
    q = make_scorer(
        Reward(
            **{
                "backend": "hf",
                "model": str(swapped),
                "positive_label": "positive",
                "batch_size": 8,
                "max_length": 16,
            }
        )
    )(texts)
    np.testing.assert_allclose(q, 1 - p, atol=1e-5)


def test_unknown_positive_label_lists_the_labels(classifier_dir):
    with pytest.raises(ValueError, match="not a label.*NEGATIVE"):
        ClassifierScorer(str(classifier_dir), "LABEL_1", batch_size=8, max_length=16)


HUB_TEXTS = [
    "A great film.",
    "A bad film, truly awful and far too long for what it had to say.",
    "Loved it<br /><br />and the cast!",
]


@pytest.mark.parametrize(
    "name", ["siebert", "distilbert_imdb", "reversed", "default_names", "three_class"]
)
def test_p_positive_is_the_classifiers_own_softmax_of_the_named_label(hub_inputs, name):
    """Every classifier format users bring (RoBERTa's <s>/</s>, BERT's [CLS]/[SEP] without EOS,
    labels in reversed order, LABEL_0/LABEL_1, three classes): the scorer, batching with right
    padding, gives each text's softmax probability of the named class, computed here alone."""
    from hub_formats import config_labels
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, positive = hub_inputs["classifiers"][name]
    p = make_scorer(
        Reward(
            **{
                "backend": "hf",
                "model": str(folder),
                "positive_label": positive,
                "batch_size": 2,
                "max_length": 512,
            }
        )
    )(HUB_TEXTS)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    index = {v: k for k, v in config_labels(folder).items()}[positive]
    with torch.no_grad():
        own = [
            model(**tok(t, return_tensors="pt")).logits.softmax(-1)[0, index].item()
            for t in HUB_TEXTS
        ]
    np.testing.assert_allclose(p, own, rtol=1e-5)


def test_classifier_tokenizer_keeps_its_own_special_tokens_and_pads_right(hub_inputs):
    from pipeline.safe_loading import load_classifier_tokenizer

    for name, first, last in [("siebert", "<s>", "</s>"), ("distilbert_imdb", "[CLS]", "[SEP]")]:
        tok = load_classifier_tokenizer(str(hub_inputs["classifiers"][name][0]), "reward.model")
        enc = tok(["good", "a much longer review"], padding=True)
        short = tok.convert_ids_to_tokens(enc["input_ids"][0])
        assert tok.padding_side == "right" and short[0] == first and last in short
        assert short[-1] == tok.pad_token != tok.eos_token


def test_texts_are_cut_at_the_smaller_of_the_classifiers_limit_and_reward_max_length(hub_inputs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, _ = hub_inputs["classifiers"]["siebert"]
    assert ClassifierScorer(str(folder), "POSITIVE", 4, max_length=100_000).max_length == 512
    long = " ".join(["a wonderful and moving film"] * 200)
    p = ClassifierScorer(str(folder), "POSITIVE", 4, max_length=16)([long])
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        own = model(**tok(long, truncation=True, max_length=16, return_tensors="pt")).logits
    np.testing.assert_allclose(p, own.softmax(-1)[:, 1].numpy(), rtol=1e-5)
