import json

import numpy as np
import pytest

from pipeline.score import ClassifierScorer, VaderScorer, make_scorer


def test_vader_maps_compound_to_probability():
    scorer = VaderScorer()
    p = scorer(["I love this wonderful movie", "I hate this awful movie", "a movie"])
    compound = [scorer.analyzer.polarity_scores(t)["compound"] for t in
                ["I love this wonderful movie", "I hate this awful movie", "a movie"]]
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
    cfg["id2label"], cfg["label2id"] = {"0": "POSITIVE", "1": "NEGATIVE"}, {"POSITIVE": 0, "NEGATIVE": 1}
    (swapped / "config.json").write_text(json.dumps(cfg))
    q = make_scorer({"backend": "hf", "model": str(swapped), "positive_label": "positive",
                     "batch_size": 8, "max_length": 16})(texts)
    np.testing.assert_allclose(q, 1 - p, atol=1e-5)


def test_unknown_positive_label_lists_the_labels(classifier_dir):
    with pytest.raises(ValueError, match="not a label.*NEGATIVE"):
        ClassifierScorer(str(classifier_dir), "LABEL_1", batch_size=8, max_length=16)
