"""What every trainer's loop shares, in one place: resuming from the last checkpoint and writing the
next ones, the clock, the metrics it logs (each row to `metrics.csv` and, opt-in, live to an
experiment tracker), the progress bar, the optimizer update (gradient clipping, then the step)
and the trained policy's outputs. Each trainer keeps what is its own: its batches, its schedule,
its loss, its statistics. Steps are counted after they are taken: a row logged with `step` n
follows n updates.

Tracking (`train.tracking`): none (the default), tensorboard, mlflow, wandb or trackio, each an
optional package; `metrics.csv` stays the record and the tracker a live view of it (a run per
trainer job, named after its output folder, logged under `train.tracking_dir`).
"""

import math
import time
from pathlib import Path

import pandas as pd
import torch

from pipeline import io
from pipeline.checkpoint import Checkpoint
from pipeline.distributed import SINGLE, World
from pipeline.logs import get_logger, progress

log = get_logger("loop")

TRACKERS = ("none", "tensorboard", "mlflow", "wandb", "trackio")


class Tracker:
    """Sends each logged row's numbers to an experiment tracker, as they are logged."""

    def __init__(self, backend: str = "none", run: str = "run", folder: str = "results/tracking"):
        if backend not in TRACKERS:
            raise ValueError(f"train.tracking = '{backend}': one of {', '.join(TRACKERS)}")
        self.backend, self.writer = backend, None
        try:
            if backend == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(Path(folder) / run))
            elif backend == "mlflow":
                import mlflow

                mlflow.set_tracking_uri(Path(folder).resolve().as_uri())
                mlflow.start_run(run_name=run)
                self.writer = mlflow
            elif backend == "wandb":
                import wandb

                self.writer = wandb.init(name=run, dir=folder, reinit=True)
            elif backend == "trackio":
                import trackio

                self.writer = trackio.init(project="imdb-dpo", name=run)
        except ImportError as err:
            raise ValueError(
                f"train.tracking = '{backend}' needs the `{err.name}` package (pip install"
                f" {err.name})"
            ) from None

    def log(self, row: dict, step: int) -> None:
        numbers = {
            k: float(v)
            for k, v in row.items()
            if isinstance(v, int | float) and k != "step" and math.isfinite(v)
        }
        if self.backend == "tensorboard":
            for key, value in numbers.items():
                self.writer.add_scalar(key, value, step)
        elif self.backend == "mlflow":
            self.writer.log_metrics(numbers, step=step)
        elif self.backend in ("wandb", "trackio"):
            self.writer.log(numbers, step=step)

    def close(self) -> None:
        if self.backend == "tensorboard":
            self.writer.close()
        elif self.backend == "mlflow":
            self.writer.end_run()
        elif self.backend in ("wandb", "trackio"):
            self.writer.finish()


def tracker_for(p, run: str) -> Tracker:
    """The tracker a trainer's settings ask for (`tracking`, `tracking_dir`), its run `run`."""
    return Tracker(p.tracking, run, p.tracking_dir)


class Run:
    """One training run's bookkeeping. `restored` holds the trainer's own state from the last
    checkpoint (None on a fresh start); `done` counts the steps (or iterations) taken."""

    def __init__(
        self,
        name: str,
        total: int,
        model: torch.nn.Module,
        opt,
        ckpt: Checkpoint | None = None,
        world: World = SINGLE,
        tracker: Tracker | None = None,
        unit: str = "step",
    ):
        self.name, self.total, self.model, self.opt = name, total, model, opt
        self.ckpt, self.world, self.tracker = ckpt, world, tracker or Tracker()
        state = ckpt.restore(model, opt) if ckpt else None
        self.restored = state
        self.done = state["done"] if state else 0
        self.metrics = state["metrics"] if state else []
        if state:
            log.info("%s: resuming from the checkpoint after %d %ss", name, self.done, unit)
        self.t0 = time.perf_counter() - (self.metrics[-1]["seconds"] if self.metrics else 0.0)
        self.bar = progress(
            total=total, initial=self.done, desc=name, unit=unit, disable=not world.main
        )

    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def log(self, row: dict, advance: bool = True, postfix: str = "loss") -> dict:
        """Record a row (its `seconds` added), send it to the tracker, move the bar."""
        row["seconds"] = self.seconds()
        self.metrics.append(row)
        if self.world.main:
            self.tracker.log(row, row.get("step", self.done))
        if advance:
            self.bar.update()
            if postfix in row:
                self.bar.set_postfix({postfix: f"{row[postfix]:.3f}"}, refresh=False)
        return row

    def checkpoint(self, state) -> None:
        """Write a checkpoint when one is due (and the run not over): `state()` gives the trainer's
        own state; it runs in every process, since it may gather from all of them."""
        if self.ckpt is None or not self.ckpt.due(self.done) or self.done >= self.total:
            return
        own = state()
        if self.world.main:
            self.ckpt.save(self.model, self.opt, own | {"done": self.done, "metrics": self.metrics})

    def close(self) -> None:
        self.bar.close()
        if self.world.main:
            self.tracker.close()


def save_policy(
    model, tok, metrics: pd.DataFrame, model_out, metrics_out, ckpt: Checkpoint | None = None
) -> None:
    """A trained policy's outputs: its folder (safetensors and tokenizer, written whole or not at
    all) and its metrics; then its checkpoint, no longer needed, goes."""
    with io.atomic_output(model_out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    io.write_csv(metrics, metrics_out)
    if ckpt is not None:
        ckpt.clear()


def update(model: torch.nn.Module, opt, max_grad_norm: float) -> float:
    """Clip the accumulated gradient to `max_grad_norm` and take the optimizer step; the norm
    before clipping."""
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    opt.step()
    return grad_norm.item()
