"""Bad input to the trainers: a clear error before training, or a stop naming the step."""

import json

import numpy as np
import pandas as pd
import pytest
from test_trainers import PAIRS, ConstantScorer, dpo_config, pairwise, pairwise_config

from pipeline.rollout import rollout
from pipeline.stages import preference, reference
from pipeline.stages.preference import train as train_pairwise

REWARD = {
    "backend": "vader",
    "model": None,
    "positive_label": "POSITIVE",
    "batch_size": 8,
    "max_length": 64,
}


def run_preference(tmp_path, policy_dir, pairs, params, ref=None):
    pairs_path = tmp_path / "pairs.parquet"
    pairs.to_parquet(pairs_path)
    argv = [
        "--params",
        json.dumps(params),
        "--pairs",
        str(pairs_path),
        "--policy",
        str(policy_dir),
        "--model",
        str(tmp_path / "model"),
        "--metrics",
        str(tmp_path / "metrics.csv"),
    ]
    if ref is not None:
        ref.to_parquet(tmp_path / "ref.parquet")
        argv += ["--reference", str(tmp_path / "ref.parquet")]
    preference.main(argv)


def test_a_pairs_file_with_no_pairs(tmp_path, policy_dir):
    with pytest.raises(ValueError, match="holds no pairs"):
        run_preference(tmp_path, policy_dir, PAIRS.head(0), dpo_config(0.1) | {"reward": REWARD})
    with pytest.raises(ValueError, match="holds no pairs"):
        PAIRS.head(0).to_parquet(tmp_path / "empty.parquet")
        reference.main(
            [
                "--params",
                '{"batch_size": 4}',
                "--pairs",
                str(tmp_path / "empty.parquet"),
                "--policy",
                str(policy_dir),
                "--out",
                str(tmp_path / "ref.parquet"),
            ]
        )
    assert not (tmp_path / "model").exists() and not (tmp_path / "ref.parquet").exists()


def test_cringe_k_larger_than_the_vocabulary(tmp_path, policy_dir):
    params = pairwise_config("cringe", b=0.0, tau=1.0, k=10**6, gate_ce=True) | {"reward": REWARD}
    with pytest.raises(ValueError, match=r"cringe.k = 1000000 exceeds the vocabulary size"):
        run_preference(tmp_path, policy_dir, PAIRS, params)
    assert not (tmp_path / "model").exists()


def test_a_stale_reference_table_is_refused(tmp_path, policy_dir):
    ref = pd.DataFrame({"ref_chosen": [0.0], "ref_rejected": [0.0]})
    with pytest.raises(ValueError, match="has 1 rows for 4 pairs"):
        run_preference(tmp_path, policy_dir, PAIRS, dpo_config(0.1) | {"reward": REWARD}, ref)
    assert not (tmp_path / "model").exists() and not (tmp_path / "metrics.csv").exists()


def test_a_nan_loss_stops_the_run_with_the_step(policy, tokenizer):
    ref = pd.DataFrame({"ref_chosen": [0.0, np.nan, 0.0, 0.0], "ref_rejected": [0.0] * 4})
    with pytest.raises(FloatingPointError, match="dpo: non-finite value at step 0"):
        train_pairwise(policy, tokenizer, PAIRS, ref, pairwise(dpo_config(0.1)), ConstantScorer())


def test_a_nan_reward_stops_the_rollout(policy, tokenizer):
    import torch

    class NaNScorer:
        def __call__(self, texts):
            return np.full(len(texts), np.nan)

    with pytest.raises(FloatingPointError, match="reward is not finite for sample 0"):
        rollout(policy, tokenizer, [[5, 6]], NaNScorer(), 3, torch.Generator().manual_seed(0))


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"dpo": {"beta": [0.1, 0.0]}},
            "config key dpo.beta.1: 0.0 is less than or equal to the minimum of 0",
        ),
        ({"dpo": {"beta": []}}, "config key dpo.beta: [] should be non-empty"),
        ({"cringe": {"k": 0}}, "config key cringe.k: 0 is less than the minimum of 1"),
        (
            {"train": {"methods": ["dpo", "spin"]}},
            "config key train.methods.1: unknown method 'spin'; known: dpo, cringe, ppo, ipo",
        ),
        (
            {"iterative": {"methods": ["ppo"]}},
            "config key iterative.methods.0: 'ppo' is not a method that trains on preference data",
        ),
        (
            {"iterative": {"rounds": 0}},
            "config key iterative.rounds: 0 is less than the minimum of 1",
        ),
        (
            {"train": {"full_methods": ["ipo"]}, "iterative": {"methods": ["unlikelihood"]}},
            "config: iterative.methods has 'unlikelihood', which is in neither train.methods nor",
        ),
    ],
)
def test_trainer_config_errors(tmp_path, config, message):
    from runner import snakemake

    proc = snakemake(tmp_path, "-n", config=config, check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
