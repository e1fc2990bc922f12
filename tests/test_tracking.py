"""Live experiment tracking, opt-in: every trainer's metrics, as they are logged, to TensorBoard
(tested for real here), MLflow, Weights & Biases or Trackio; metrics.csv stays the record."""

import importlib.util
import pathlib

import pandas as pd
import pytest
from conftest import PAIRWISE_PARAMS, SFT_PARAMS, train_pairwise

from pipeline.loop import Tracker
from pipeline.stages import sft


def test_a_tensorboard_run_holds_every_logged_row_of_metrics_csv(tmp_path, sft_args):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    params = SFT_PARAMS | {
        "epochs": 2,
        "batch_size": 8,
        "checkpoint_every": 0,
        "tracking": "tensorboard",
        "tracking_dir": str(tmp_path / "tb"),
    }
    sft.main(sft_args(params, tmp_path / "out"))
    metrics = pd.read_csv(tmp_path / "out/metrics.csv")
    events = EventAccumulator(str(tmp_path / "tb/sft")).Reload()
    for column in ("loss", "lr", "grad_norm", "tokens", "seconds"):
        logged = events.Scalars(column)
        assert [e.step for e in logged] == metrics["step"].tolist(), column
        assert [e.value for e in logged] == pytest.approx(metrics[column].tolist(), rel=1e-6)
    assert "step" not in events.Tags()["scalars"]  # the x axis, not a series


def test_a_later_rounds_run_is_named_after_its_round(tmp_path, pair_files, policy_dir):
    """Round 2 of iterative DPO logs under its own policy id, not over round 1's run."""
    params = PAIRWISE_PARAMS | {
        "method": "dpo",
        "beta": 0.1,
        "epochs": 1,
        "round": 2,
        "tracking": "tensorboard",
        "tracking_dir": str(tmp_path / "tb"),
    }
    train_pairwise(params, pair_files, policy_dir, tmp_path / "run")
    runs = [p.relative_to(tmp_path / "tb").parent for p in (tmp_path / "tb").rglob("events.*")]
    assert runs == [pathlib.Path("dpo/0.1/seed0/round2")]


def test_an_unknown_or_missing_tracker_is_named():
    with pytest.raises(ValueError, match="train.tracking = 'comet': one of none, tensorboard"):
        Tracker("comet")
    if importlib.util.find_spec("mlflow") is None:
        with pytest.raises(ValueError, match="needs the `mlflow` package"):
            Tracker("mlflow")
