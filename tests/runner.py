"""Running the Snakefile in a scratch directory, as a user would."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MICRO = REPO / "tests" / "configs" / "micro.yaml"
# Cores for the micro study's local runs, above this 2-core machine's count on purpose: its jobs
# spend most of their time starting Python and importing torch, so more of them at once finish
# sooner, with the same bytes; the torch rules still cap their threads at the machine's cores.
CORES = "4"


def command(workdir, *args, config=None, configfile=MICRO) -> list[str]:
    """snakemake on the repository's Snakefile inside `workdir`, with config.yaml extended by
    `configfile` (the micro study) and then by `config`."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
    ]
    if config is not None:
        extra = Path(workdir) / "override.yaml"
        extra.write_text(yaml.safe_dump(config))
        cmd += [str(extra)]
    return cmd + list(args)


def environment(env=None) -> dict:
    """Offline unless `env` says otherwise."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}


def snakemake(workdir, *args, config=None, check=True, configfile=MICRO, env=None):
    """Run snakemake (see `command`) and wait for it."""
    proc = subprocess.run(
        command(workdir, *args, config=config, configfile=configfile),
        capture_output=True,
        text=True,
        env=environment(env),
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def side_by_side(runs: dict) -> None:
    """Several snakemake runs at once, `runs` mapping each workdir to its `command` arguments
    (args, config, configfile); each one's output goes to its workdir's snakemake.log."""
    procs = {}
    for workdir, (args, config, configfile) in runs.items():
        with open(Path(workdir) / "snakemake.log", "w") as log:
            procs[workdir] = subprocess.Popen(
                command(workdir, *args, config=config, configfile=configfile),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment(),
            )
    failed = [w for w, proc in procs.items() if proc.wait() != 0]
    if failed:
        logs = "\n".join((Path(w) / "snakemake.log").read_text()[-5000:] for w in failed)
        raise AssertionError(f"snakemake failed in {failed}:\n{logs}")


def planned_jobs(workdir, config=None, targets=()) -> dict[str, int]:
    """The rules a dry run would execute, with their counts (from snakemake's job stats)."""
    out = snakemake(workdir, "-n", *targets, config=config)
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def why_no_slurm() -> str | None:
    """Why tests/test_slurm.py does not boot SLURM here, or None when it does."""
    if os.environ.get("PIPELINE_TEST_SLURM") != "1":
        return (
            "opt in with PIPELINE_TEST_SLURM=1: it installs SLURM and munge from Debian (as"
            " root), and removes them after"
        )
    if os.geteuid() != 0:
        return "starting the SLURM daemons needs root"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "SLURM is not installed and there is no apt-get to install it"
    return None
