"""Resumable training: periodic checkpoints in a folder outside the rule's declared outputs.

Snakemake deletes the outputs of a failed job, so a checkpoint lives beside them
(results/checkpoints/...); a rerun of the job restores the last one and continues, and the
folder is removed once the final model is written. A checkpoint holds everything the next step
depends on (weights as safetensors; optimizer state, step, data order, random generator states
and metrics so far as plain tensors and numbers, read back with torch.load(weights_only=True)),
so an interrupted run ends with the same weights as an uninterrupted one.
"""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from pipeline import io

log = logging.getLogger("checkpoint")


def fingerprint(params: dict, *inputs) -> str:
    """What a checkpoint was made from: the stage's config and its input files (path, size,
    modification time). A checkpoint whose fingerprint differs is stale and is not restored."""

    def stat(path):
        files = sorted(Path(path).rglob("*")) if Path(path).is_dir() else [Path(path)]
        return [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]

    blob = json.dumps([params, [stat(p) for p in inputs if p]], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class Checkpoint:
    def __init__(self, folder: str | None, every: int, fingerprint: str = ""):
        self.folder = Path(folder) if folder else None
        self.every = every
        self.fingerprint = fingerprint

    def due(self, step: int) -> bool:
        return self.folder is not None and self.every > 0 and step % self.every == 0

    def save(self, module: torch.nn.Module, optimizer, state: dict) -> None:
        with io.atomic_output(self.folder) as tmp:
            tmp.mkdir()
            save_model(module, str(tmp / "model.safetensors"))  # handles tied embeddings
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(state | {"fingerprint": self.fingerprint}, tmp / "state.pt")

    def restore(self, module: torch.nn.Module, optimizer, usable=None) -> dict | None:
        """The saved state dict after loading weights and optimizer in place; None if none.
        `usable(done)` may refuse a checkpoint that the run cannot go on from (what it kept
        beside it up to step `done` is gone)."""
        if self.folder is None or not (self.folder / "state.pt").exists():
            return None
        state = torch.load(self.folder / "state.pt", weights_only=True)
        stale = state.get("fingerprint") != self.fingerprint
        if stale or (usable is not None and not usable(state["done"])):
            why = "config or inputs changed" if stale else "what the run kept beside it is gone"
            log.warning("ignoring the stale checkpoint in %s (%s)", self.folder, why)
            self.clear()
            return None
        device = next(module.parameters()).device
        load_model(module, str(self.folder / "model.safetensors"), device=str(device))
        optimizer.load_state_dict(
            torch.load(self.folder / "optimizer.pt", weights_only=True, map_location=device)
        )
        return state

    def clear(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
