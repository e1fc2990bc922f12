"""Live experiment tracking, opt-in: every trainer's metrics, as they are logged, to TensorBoard
(tested for real here), MLflow, Weights & Biases or Trackio; metrics.csv stays the record."""

import importlib.util

import pandas as pd
import pytest
from conftest import SFT_PARAMS

from pipeline import sft
from pipeline.loop import Tracker


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


def test_an_unknown_or_missing_tracker_is_named():
    with pytest.raises(ValueError, match="train.tracking = 'comet': one of none, tensorboard"):
        Tracker("comet")
    if importlib.util.find_spec("mlflow") is None:
        with pytest.raises(ValueError, match="needs the `mlflow` package"):
            Tracker("mlflow")
