"""What every recorded benchmark figure carries: when, which commit, which machine, and how loaded
the machine was (this one is shared, so `uptime`'s load averages say how much to trust a figure)."""

import datetime
import os
import platform
import subprocess
from pathlib import Path

# The environment as given, before pipeline adds its defaults (torch's OpenMP wait): what a
# benchmark passes to the code it measures, which sets its own.
ENVIRON = dict(os.environ)

# before torch: pipeline sets torch's OpenMP wait policy
from pipeline import io  # noqa: E402  # isort: skip

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def commit(repo: Path = ROOT) -> str:
    """HEAD's hash, with "+dirty" when the working tree differs from it."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=repo,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head + ("+dirty" if dirty else "")


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem / 2**20, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def provenance() -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine(),
        "uptime_before": uptime(),
    }


def write(result: dict, path) -> None:
    """`result` with the load at the end of the run added, written whole or not at all."""
    io.write_json(result | {"uptime_after": uptime()}, path)
    print(f"-> {path}")
