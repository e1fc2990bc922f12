"""What every trainer's loop shares, in one place: resuming from the last checkpoint and writing the
next ones, the points along the run (the policy saved at chosen fractions of its steps), the clock,
the metrics it logs (each row to `metrics.csv` and, opt-in, live to an experiment tracker), the
progress bar, the random generators' seeds, the optimizers and learning-rate schedules, the
optimizer update (a non-finite loss stopped, gradient clipping, then the step) and the trained
policy's outputs. Each trainer keeps what is its own: its batches, its choice of schedule, its
loss, its statistics. Steps are counted after they are
taken: a row logged with `step` n follows n updates.

Tracking (`train.tracking`): none (the default), tensorboard, mlflow, wandb or trackio, each an
optional package; `metrics.csv` stays the record and the tracker a live view of it (a run per
trainer job, named after its output folder, logged under `train.tracking_dir`).
"""

import json
import math
import shutil
import time
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch

from pipeline import io
from pipeline.checkpoint import Checkpoint, fingerprint
from pipeline.distributed import SINGLE, World, teardown
from pipeline.logs import get_logger, progress
from pipeline.lora import merged
from pipeline.paths import point_name

log = get_logger("loop")

TRACKERS = ("none", "tensorboard", "mlflow", "wandb", "trackio")


# --- the optimiser and its schedule (every trainer's) ---------------------------------------


def make_optimizer(params, name: str, lr: float, weight_decay: float = 0.0):
    """AdamW, or RMSprop as the DPO paper uses for its policies."""
    params = list(params)
    if name == "adamw":
        # fused on CUDA: one kernel for all parameters instead of a launch per tensor; on CPU the
        # foreach form, which gives the per-tensor loop's numbers to the bit with less Python
        # per step (fused changes the last bits)
        cuda = params[0].is_cuda
        return torch.optim.AdamW(
            params,
            lr=lr,
            weight_decay=weight_decay,
            betas=(0.9, 0.95),
            fused=cuda,
            foreach=not cuda,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer '{name}' (adamw or rmsprop)")


def warmup_constant(step: int, warmup: int, lr: float) -> float:
    """Linear warmup over `warmup` steps, then constant (the DPO reference schedule)."""
    return lr * min(1.0, (step + 1) / max(1, warmup))


def warmup_cosine(step: int, total: int, warmup: int, lr: float) -> float:
    """Linear warmup, then cosine decay to 10% of `lr` at step `total`."""
    if step < warmup:
        return warmup_constant(step, warmup, lr)
    frac = (step - warmup) / max(1, total - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def check_finite(loss: torch.Tensor, stage: str, step: int, batch: str) -> None:
    """Stop the run at the first non-finite loss or reward, naming the step and the batch."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(f"{stage}: non-finite value at step {step} ({batch})")


# --- the run -------------------------------------------------------------------------------


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


class Trajectory:
    """Points along a run (its settings section's `trajectory`): at each chosen fraction of the
    run's steps the policy is saved as a model folder of its own, `<out>/<fraction>/model`
    (adapters merged into a copy), beside `point.json` (the fraction and the step). Each is then
    evaluated as a policy of its own, so one run draws several points of its method's frontier for
    the price of their evaluations. The final policy stays the run's `model` output.

    The points are kept beside the checkpoint while the run goes on (a resumed run still has the
    ones it passed) and move to `out` with the final policy."""

    def __init__(self, fractions: list[float], key: str, out=None, ckpt: Checkpoint | None = None):
        self.fractions, self.key, self.out = list(fractions), key, out and Path(out)
        if self.fractions and self.out is None:
            raise ValueError(f"{key} = {self.fractions}: the points need a folder (--trajectory)")
        if ckpt is not None and ckpt.folder is not None:
            self.staging = ckpt.folder.with_name(ckpt.folder.name + ".trajectory")
        else:
            self.staging = self.out and self.out.with_name(f".{self.out.name}.staging")
        self.steps, self.total, self.policy, self.tok = {}, 0, None, None

    def plan(self, total: int, policy: torch.nn.Module, tok) -> None:
        """The step of each point of a run of `total` steps; the policy and tokenizer it saves."""
        self.steps, self.total, self.policy, self.tok = {}, total, policy, tok
        for fraction in self.fractions:
            step = round(fraction * total)
            if not 0 < step < total:
                raise ValueError(
                    f"{self.key} = {fraction}: a run of {total} steps has no step there"
                    " (fractions strictly between 0 and 1, at least one step from either end)"
                )
            if step in self.steps:
                raise ValueError(
                    f"{self.key}: {self.steps[step]} and {fraction} both fall on step {step}"
                    f" of {total}"
                )
            self.steps[step] = fraction

    def folder(self, fraction: float) -> Path:
        return self.staging / point_name(fraction)

    def kept(self, done: int) -> bool:
        """Whether every point up to step `done` is on disk (a checkpoint there can be resumed)."""
        return all(self.folder(f).is_dir() for step, f in self.steps.items() if step <= done)

    def clear(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)

    def save(self, done: int) -> None:
        """The point at step `done`, if one is due there."""
        if done not in self.steps:
            return
        fraction = self.steps[done]
        with io.atomic_output(self.folder(fraction)) as tmp:
            merged(self.policy, keep=True).save_pretrained(tmp / "model")
            self.tok.save_pretrained(tmp / "model")
            point = {"fraction": fraction, "step": done, "steps": self.total}
            (tmp / "point.json").write_text(json.dumps(point, indent=2) + "\n")

    def publish(self) -> None:
        """Every point, moved to `out` as one folder (empty without points)."""
        if self.out is None:
            return
        with io.atomic_output(self.out) as tmp:
            tmp.mkdir()
            for fraction in self.fractions:
                shutil.move(self.folder(fraction), tmp / point_name(fraction))
        self.clear()


class Run:
    """One training run's bookkeeping. `restored` holds the trainer's own state from the last
    checkpoint (None on a fresh start); `done` counts the steps (or iterations) taken; `points`
    (planned by the trainer) saves the points along the run as their steps are reached."""

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
        points: Trajectory | None = None,
    ):
        self.name, self.total, self.model, self.opt = name, total, model, opt
        self.ckpt, self.world, self.tracker = ckpt, world, tracker or Tracker()
        self.points = points
        kept = points.kept if points is not None else None
        state = ckpt.restore(model, opt, kept) if ckpt else None
        if state is None and points is not None and world.main:
            points.clear()  # a fresh start makes every point again
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

    def update(self, loss, max_grad_norm: float, batch: str, step: int | None = None) -> float:
        """The optimizer step after the gradient is accumulated: stop at a non-finite loss, naming
        the step (`done`, or the trainer's own count) and the batch; else clip the gradient to
        `max_grad_norm` and step. Returns the norm before clipping."""
        check_finite(torch.as_tensor(loss), self.name, self.done if step is None else step, batch)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_grad_norm)
        self.opt.step()
        return grad_norm.item()

    def end_step(self, state) -> None:
        """After each step: save the point along the run due there, then write a checkpoint when
        one is due (and the run not over). `state()` gives the trainer's own state; it runs in
        every process, since it may gather from all of them."""
        if self.points is not None and self.world.main:
            self.points.save(self.done)
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
    model,
    tok,
    metrics: pd.DataFrame,
    model_out,
    metrics_out,
    ckpt: Checkpoint | None = None,
    points: Trajectory | None = None,
) -> None:
    """A trained policy's outputs: its folder (safetensors and tokenizer, written whole or not at
    all; adapters merged), its metrics and the points along its run; then its checkpoint, no
    longer needed, goes."""
    with io.atomic_output(model_out) as tmp:
        merged(model).save_pretrained(tmp)
        tok.save_pretrained(tmp)
    io.write_csv(metrics, metrics_out)
    if points is not None:
        points.publish()
    if ckpt is not None:
        ckpt.clear()


class Job(NamedTuple):
    """What a policy trainer's job keeps beside its loop: its checkpoint, its tracker run (the
    main process's), the points along its run, and its processes."""

    ckpt: Checkpoint
    tracker: Tracker | None
    points: Trajectory
    world: World


def start_job(args, p, world: World, run: str, section: str, *inputs) -> Job:
    """A trainer job's checkpoint, stale once its config, its inputs or its number of processes
    (each holds its own generator states) differ; its tracker run, named `run`; and the points
    along it (`<section>.trajectory`), folder `args.trajectory`."""
    params = args.params | {"processes": world.size}
    ckpt = Checkpoint(args.checkpoint, p.checkpoint_every, fingerprint(params, *inputs))
    tracker = tracker_for(p, run) if world.main else None
    return Job(
        ckpt,
        tracker,
        Trajectory(p.trajectory, f"{section}.trajectory", args.trajectory, ckpt),
        world,
    )


def finish_job(job: Job, policy, tok, metrics: pd.DataFrame, args) -> bool:
    """The processes torn down; the main one writes the policy's outputs (`save_policy`).
    Whether this is the main process."""
    teardown(job.world)
    if job.world.main:
        save_policy(policy, tok, metrics, args.model, args.metrics, job.ckpt, job.points)
    return job.world.main


class Generators(NamedTuple):
    """A trainer's random streams, each seeded from the run's seed in one way for every trainer."""

    order: torch.Generator  # the data order, prompts and minibatches: the same in every process
    sampling: torch.Generator  # samples drawn while training (rollouts, the reward monitor)
    tokens: torch.Generator  # draws inside a loss (Cringe's positive tokens)


def generators(seed: int, world: World = SINGLE, device=None) -> Generators:
    """The order on the CPU from `seed` in every process; the sampling stream from seed + rank and
    the loss's draws from seed + 1 + rank, on `device`: one stream per process."""
    return Generators(
        torch.Generator().manual_seed(seed),
        torch.Generator(device=device).manual_seed(seed + world.rank),
        torch.Generator(device=device).manual_seed(seed + 1 + world.rank),
    )
