"""Data parallelism and gradient accumulation for the trainers, with the same global batch.

Under torchrun (WORLD_SIZE > 1) each process takes its contiguous share of the global batch (a
prompt's pairs stay together, and share their responses) and splits it into micro-batches of at
most `micro_batch_size` rows. Each micro-batch's loss is a *sum* over examples (or tokens)
divided by the global batch's count, times `world` because DDP averages gradients over
processes: the accumulated gradient is then the single-process full-batch gradient, whatever
the number of processes and the micro-batch size.
"""

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """The process that samples the reward monitor, logs, checkpoints and writes outputs."""
        return self.rank == 0

    def micro_batches(self, rows: torch.Tensor, micro_batch_size: int | None, key: str):
        """This process's share of a global batch of row indices, in micro-batches."""
        if len(rows) % self.size:
            raise ValueError(f"{key} = {len(rows)} is not a multiple of the {self.size} processes")
        mine = rows.reshape(self.size, -1)[self.rank]
        return list(mine.split(micro_batch_size or len(mine)))

    def gather(self, obj) -> list:
        """Every process's `obj` (any picklable value), by rank; every process gets the list."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def interleave(self, rows: list) -> list:
        """The global batch from each process's strided share of it (PPO's rollouts): global
        row i is row i // size of process i % size."""
        parts = self.gather(rows)
        return [parts[i % self.size][i // self.size] for i in range(sum(map(len, parts)))]

    def interleave_tensor(self, rows: torch.Tensor) -> torch.Tensor:
        """`interleave` for tensors of the same shape in every process (dim 0: rows)."""
        if self.size == 1:
            return rows
        parts = [torch.empty_like(rows) for _ in range(self.size)]
        dist.all_gather(parts, rows.contiguous())
        return torch.stack(parts, 1).flatten(0, 1)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over the processes (every process gets it)."""
        if self.size > 1:
            values = values.clone()
            dist.all_reduce(values)
        return values


SINGLE = World()


def setup() -> World:
    """The process group when launched by torchrun: NCCL on GPUs, gloo on CPU."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return World(dist.get_rank(), size)


def teardown(world: World) -> None:
    if world.size > 1:
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, world: World, compile: bool = False) -> torch.nn.Module:
    """The module a trainer's steps call: compiled if asked, in DDP when there are several
    processes (it broadcasts rank 0's weights on construction). `model` itself stays eager, for
    the sampling between steps, whose shapes change at every token."""
    if compile:
        model = torch.compile(model)
    return DistributedDataParallel(model) if world.size > 1 else model


def accumulate(model, parts: list, step, count: float, world: World) -> dict[str, float]:
    """Backward through this process's micro-batches; the global sums of the step's statistics.

    `step(part)` returns (summed loss over the part's examples, {name: summed statistic}); `count`
    is the global batch's number of examples (or tokens) that the loss is averaged over. Gradients
    are all-reduced once, after the last micro-batch.
    """
    names, totals = None, None
    for i, part in enumerate(parts):
        syncing = i == len(parts) - 1 or not isinstance(model, DistributedDataParallel)
        with contextlib.nullcontext() if syncing else model.no_sync():
            loss_sum, stats = step(part)
            (loss_sum * (world.size / count)).backward()
        names = ["loss", *stats]
        row = torch.stack([loss_sum.detach(), *stats.values()]).float()
        totals = row if totals is None else totals + row
    return dict(zip(names, world.sum(totals).tolist(), strict=True))
