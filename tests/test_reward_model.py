"""The reward model of the RLHF route learns a preference, reads the last real token and
round-trips through its folder; its scorer returns standardised rewards."""

import json
import os
import random
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REWARD_MODEL_PARAMS

from pipeline.classifiers import HEAD_FILE, RewardModel, load_reward_model, save_reward_model
from pipeline.logprobs import left_pad
from pipeline.models import load_causal_lm
from pipeline.rewards import Reward, make_scorer
from pipeline.stages.reward_model import (
    main,
    split_by_prompt,
)

N_PROMPTS, PAIRS_PER_PROMPT = 40, 3


def synthetic_texts(seed: int = 0) -> pd.DataFrame:
    """Digit strings (the tiny BPE has no merges on digits, so one token per character); the
    chosen response holds a '#' and the rejected one a '@', each at a random position."""
    rng = random.Random(seed)

    def response(marker):
        chars = rng.choices("0123456789", k=3)
        chars.insert(rng.randrange(4), marker)
        return "".join(chars)

    return pd.DataFrame(
        [
            {
                "prompt_id": i,
                "prompt": "".join(rng.choices("0123456789", k=2)),
                "chosen": response("#"),
                "rejected": response("@"),
            }
            for i in range(N_PROMPTS)
            for _ in range(PAIRS_PER_PROMPT)
        ]
    )


def to_pairs(texts: pd.DataFrame, tok) -> pd.DataFrame:
    def enc(column):
        return [tok.encode(t, add_special_tokens=False) for t in texts[column]]

    return pd.DataFrame(
        {
            "prompt_id": texts["prompt_id"],
            "prompt_ids": enc("prompt"),
            "chosen_ids": enc("chosen"),
            "rejected_ids": enc("rejected"),
        }
    )


def run_main(tmp, policy_dir, pairs_path, params=REWARD_MODEL_PARAMS):
    main(
        [
            "--params",
            json.dumps(params),
            "--pairs",
            str(pairs_path),
            "--policy",
            str(policy_dir),
            "--model",
            str(tmp / "model"),
            "--metrics",
            str(tmp / "metrics.csv"),
            "--summary",
            str(tmp / "summary.json"),
        ]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, policy_dir, tokenizer):
    """One short training run through the stage's command line, on the synthetic pairs."""
    tmp = tmp_path_factory.mktemp("reward_model")
    texts = synthetic_texts()
    pairs = to_pairs(texts, tokenizer)
    # the scorer re-tokenises decoded text: that must give back the training ids
    assert (
        tokenizer.encode(texts["prompt"][0] + texts["chosen"][0], add_special_tokens=False)
        == pairs["prompt_ids"][0] + pairs["chosen_ids"][0]
    )
    pairs.to_parquet(tmp / "pairs.parquet")
    run_main(tmp, policy_dir, tmp / "pairs.parquet")
    return tmp, texts


def test_training_learns_the_preference_on_held_out_prompts(trained):
    tmp, _ = trained
    summary = json.loads((tmp / "summary.json").read_text())
    metrics = pd.read_csv(tmp / "metrics.csv")
    assert summary["val_pairs"] == 10 * PAIRS_PER_PROMPT  # 25% of the 40 prompts
    assert summary["train_pairs"] + summary["val_pairs"] == N_PROMPTS * PAIRS_PER_PROMPT
    assert summary["val_accuracy"] >= 0.9 and summary["val_loss"] < np.log(2)
    assert metrics["loss"].iloc[0] == pytest.approx(np.log(2))  # zero head: every reward 0
    assert metrics["loss"].tail(5).mean() < 0.5 * metrics["loss"].head(5).mean()
    assert set(metrics.columns) >= {"step", "loss", "accuracy", "lr", "seconds"}
    assert summary["reward_std"] > 0
    assert {p.name for p in (tmp / "model").iterdir()} >= {
        HEAD_FILE,
        "model.safetensors",
        "config.json",
        "tokenizer.json",
    }


def test_reward_does_not_depend_on_left_padding(trained):
    tmp, _ = trained
    model = load_reward_model(str(tmp / "model"), "reward.model")
    short, long = [3, 4, 5], [6, 7, 8, 9, 10, 11, 12, 13]
    with torch.no_grad():
        alone = model(left_pad([[1, 2]], [short], 0))
        padded = model(left_pad([[1, 2], [1, 2]], [short, long], 0))
    assert alone.abs().item() > 0  # a trained head: the comparison is not 0 == 0
    torch.testing.assert_close(padded[0], alone[0], rtol=0, atol=1e-5)


def test_save_then_load_gives_identical_rewards(policy_dir, tokenizer, tmp_path):
    torch.manual_seed(0)
    model = RewardModel(load_causal_lm(str(policy_dir), "policy").base_model).eval()
    torch.nn.init.normal_(model.head.weight)
    model.reward_mean.fill_(0.3)
    model.reward_std.fill_(2.0)
    save_reward_model(model, tokenizer, tmp_path)
    loaded = load_reward_model(str(tmp_path), "reward.model")
    batch = left_pad([[1, 2], [3]], [[4, 5, 6], [7, 8, 9, 10, 11]], 0)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.standardised(batch), model.standardised(batch), rtol=0, atol=1e-6
        )
    assert loaded.reward_mean.item() == pytest.approx(0.3)
    with pytest.raises(FileNotFoundError, match=f"{policy_dir}.*{HEAD_FILE}"):
        load_reward_model(str(policy_dir), "reward.model")


def test_scorer_returns_standardised_rewards_that_rank_chosen_first(trained):
    tmp, texts = trained
    true = {"backend": "vader", "model": None, "positive_label": "POSITIVE"}
    scorer = make_scorer(Reward(**true, batch_size=16, max_length=32), str(tmp / "model"))
    train, val = split_by_prompt(
        texts, REWARD_MODEL_PARAMS["holdout_fraction"], REWARD_MODEL_PARAMS["seed"]
    )
    # standardised with the training sequences' own mean and std
    r = scorer(
        (train["prompt"] + train["chosen"]).tolist()
        + (train["prompt"] + train["rejected"]).tolist()
    )
    assert r.dtype == np.float64 and r.shape == (2 * len(train),)
    assert abs(r.mean()) < 1e-4 and r.std(ddof=1) == pytest.approx(1.0, abs=1e-4)
    chosen = scorer((val["prompt"] + val["chosen"]).tolist())
    rejected = scorer((val["prompt"] + val["rejected"]).tolist())
    assert chosen.shape == (len(val),) and (chosen > rejected).mean() >= 0.9


def test_validation_prompts_are_disjoint_from_training_prompts():
    pairs = synthetic_texts()
    train, val = split_by_prompt(pairs, 0.25, seed=1)
    assert not set(train["prompt_id"]) & set(val["prompt_id"])
    assert len(train) + len(val) == len(pairs) and val["prompt_id"].nunique() == 10
    again, _ = split_by_prompt(pairs, 0.25, seed=1)
    assert again.equals(train)  # seeded


@pytest.mark.parametrize("fraction, held", [(0.0, 0), (1.0, N_PROMPTS)])
def test_a_holdout_that_leaves_a_side_empty_is_refused(
    fraction, held, tmp_path, policy_dir, tokenizer
):
    to_pairs(synthetic_texts(), tokenizer).to_parquet(tmp_path / "pairs.parquet")
    with pytest.raises(ValueError, match=f"= {fraction} holds out {held} of {N_PROMPTS} prompts"):
        run_main(
            tmp_path,
            policy_dir,
            tmp_path / "pairs.parquet",
            {**REWARD_MODEL_PARAMS, "holdout_fraction": fraction},
        )


def test_an_empty_pairs_file_stops_the_stage_with_one_line(tmp_path, policy_dir, tokenizer):
    to_pairs(synthetic_texts(), tokenizer).iloc[:0].to_parquet(tmp_path / "pairs.parquet")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.stages.reward_model",
            "--params",
            json.dumps(REWARD_MODEL_PARAMS),
            "--pairs",
            str(tmp_path / "pairs.parquet"),
            "--policy",
            str(policy_dir),
            "--model",
            str(tmp_path / "model"),
            "--metrics",
            str(tmp_path / "metrics.csv"),
            "--summary",
            str(tmp_path / "summary.json"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].endswith("the pairs file holds no pairs")
    assert not (tmp_path / "model").exists()
