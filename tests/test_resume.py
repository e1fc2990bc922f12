"""A training job killed mid-run (SIGKILL) and rerun ends with the same weights as one never
interrupted (CPU, same seed), also on 2 processes under torchrun, where each process restores
its own random generator; so do the points along its run, those saved before the kill among
them."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import ONLINE_PARAMS, PAIRWISE_PARAMS, PPO_PARAMS, REWARD_MODEL_PARAMS, SFT_PARAMS
from safetensors.torch import load_file

pytestmark = pytest.mark.slow  # runs Snakemake or several processes: not in the inner loop

# two CPU processes on gloo, as in tests/test_distributed.py
GLOO = pytest.mark.skipif(
    not torch.distributed.is_gloo_available(), reason="this torch build has no gloo backend"
)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (torchrun starts its workers in sessions of their own)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def launch(module, args, workdir, name, processes=1) -> subprocess.Popen:
    """Start `python -m pipeline.<module>` (under torchrun with several processes), its output
    appended to workdir/<name>.log."""
    launcher, env = [sys.executable], ENV
    if processes > 1:  # on CPU also where a GPU is visible: one GPU cannot hold two NCCL ranks
        launcher += [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(processes),
        ]
        env = ENV | {"CUDA_VISIBLE_DEVICES": ""}
    with open(workdir / f"{name}.log", "a") as log:
        return subprocess.Popen(
            launcher + ["-m", f"pipeline.stages.{module}"] + args(workdir / name),
            env=env,
            stdout=log,
            stderr=log,
        )


def kill_at_the_first_checkpoint(proc: subprocess.Popen, out: Path) -> int:
    """SIGKILL every process of the run once its first checkpoint exists."""
    deadline = time.time() + 120
    while (
        not (out / "checkpoint" / "state.pt").exists()
        and proc.poll() is None
        and time.time() < deadline
    ):
        time.sleep(0.002)
    for pid in process_tree(proc.pid):
        os.kill(pid, signal.SIGKILL)
    return proc.wait()


def kill_then_resume(module, args, tmp_path, processes=1):
    # The uninterrupted run beside the one to kill: each spends most of its time starting Python.
    straight = launch(module, args, tmp_path, "straight", processes)
    killed = launch(module, args, tmp_path, "killed", processes)
    assert kill_at_the_first_checkpoint(killed, tmp_path / "killed") == -signal.SIGKILL
    assert straight.wait() == 0
    assert not (tmp_path / "killed" / "model").exists(), "killed before it finished"
    assert (tmp_path / "killed" / "checkpoint" / "state.pt").exists()
    assert launch(module, args, tmp_path, "killed", processes).wait() == 0
    assert "resuming from the checkpoint" in (tmp_path / "killed.log").read_text()
    assert not (tmp_path / "killed" / "checkpoint").exists(), "the checkpoint is removed at the end"
    assert not (tmp_path / "killed" / "checkpoint.trajectory").exists()
    weights = sorted(
        f.relative_to(tmp_path / "straight") for f in (tmp_path / "straight").rglob("*.safetensors")
    )
    assert weights == sorted(
        f.relative_to(tmp_path / "killed") for f in (tmp_path / "killed").rglob("*.safetensors")
    )
    for f in weights:
        a, b = load_file(tmp_path / "straight" / f), load_file(tmp_path / "killed" / f)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (f, k)
    return weights


# Cringe (the trainer that also restores a generator: its sampled tokens) on two processes,
# where each process's generator is restored from its own state.
@pytest.mark.parametrize("method, processes", [("dpo", 1), pytest.param("cringe", 2, marks=GLOO)])
def test_preference_trainer_resumes_to_the_same_weights(pair_files, policy_dir, method, processes):
    own = {"dpo": {"beta": 0.1}, "cringe": {"b": 0.0, "tau": 1.0, "k": 3, "gate_ce": True}}
    params = (
        PAIRWISE_PARAMS
        | own[method]
        | {
            "method": method,
            "lr": 1e-3,
            "epochs": 12,
            "warmup_steps": 3,
            "reward_every": 50,
            "max_new_tokens": 3,
            "checkpoint_every": 7,
            # points at steps 4 (before the kill at the first checkpoint, step 7) and 96 of 192
            "trajectory": [0.02, 0.5],
        }
    )

    def args(out):
        return [
            "--params",
            json.dumps(params),
            "--pairs",
            str(pair_files / "pairs.parquet"),
            "--reference",
            str(pair_files / "ref.parquet"),
            "--policy",
            str(policy_dir),
            "--model",
            str(out / "model"),
            "--metrics",
            str(out / "metrics.csv"),
            "--trajectory",
            str(out / "at"),
            "--checkpoint",
            str(out / "checkpoint"),
        ]

    weights = kill_then_resume("preference", args, pair_files, processes)
    assert [str(w) for w in weights] == [
        "at/0.02/model/model.safetensors",
        "at/0.5/model/model.safetensors",
        "model/model.safetensors",
    ]
    point = json.loads((pair_files / "killed" / "at" / "0.02" / "point.json").read_text())
    assert point == {"fraction": 0.02, "step": 4, "steps": 192}


# PPO on two processes (each restores its own sampling generator) where gloo is there, else on
# one: the one-process run is the same code with one generator, and costs the suite a run more;
# GRPO, the online trainer, in its one process. Each keeps the points saved before the kill.
@pytest.mark.parametrize(
    "module, params, processes, points",
    [
        (
            "ppo",
            PPO_PARAMS | {"iterations": 40, "trajectory": [0.05, 0.5]},
            2 if torch.distributed.is_gloo_available() else 1,
            2,  # at iterations 2 (before the kill) and 20
        ),
        ("online", ONLINE_PARAMS | {"iterations": 30, "trajectory": [0.5]}, 1, 1),
    ],
)
def test_an_online_trainer_resumes_to_the_same_weights(
    tmp_path, policy_dir, module, params, processes, points
):
    pd.DataFrame({"prompt_ids": [[5, 6], [7, 8, 9], [10], [11, 12]]}).to_parquet(
        tmp_path / "prompts.parquet"
    )
    params = params | {"checkpoint_every": 3}

    def args(out):
        return [
            "--params", json.dumps(params),
            "--prompts", str(tmp_path / "prompts.parquet"),
            "--policy", str(policy_dir),
            "--model", str(out / "model"),
            "--metrics", str(out / "metrics.csv"),
            "--trajectory", str(out / "at"),
            "--checkpoint", str(out / "checkpoint"),
        ]  # fmt: skip

    assert len(kill_then_resume(module, args, tmp_path, processes)) == points + 1  # and the end
    a = pd.read_csv(tmp_path / "straight" / "metrics.csv")
    b = pd.read_csv(tmp_path / "killed" / "metrics.csv")
    assert a.drop(columns="seconds").equals(b.drop(columns="seconds"))


def test_the_reward_model_resumes_to_the_same_weights(pair_files, policy_dir):
    params = REWARD_MODEL_PARAMS | {
        "lr": 1e-3,
        "batch_size": 4,
        "epochs": 6,
        "checkpoint_every": 7,
    }

    def args(out):
        return [
            "--params", json.dumps(params),
            "--pairs", str(pair_files / "pairs.parquet"),
            "--policy", str(policy_dir),
            "--model", str(out / "model"),
            "--metrics", str(out / "metrics.csv"),
            "--summary", str(out / "summary.json"),
            "--checkpoint", str(out / "checkpoint"),
        ]  # fmt: skip

    weights = kill_then_resume("reward_model", args, pair_files)
    assert [w.name for w in weights] == ["model.safetensors", "reward_head.safetensors"]


def test_sft_resumes_to_the_same_weights(tmp_path, sft_args):
    params = SFT_PARAMS | {"epochs": 3, "batch_size": 4, "checkpoint_every": 4}

    def args(out):
        return sft_args(params, out) + ["--checkpoint", str(out / "checkpoint")]

    kill_then_resume("sft", args, tmp_path)


def test_a_stale_checkpoint_is_not_restored(tmp_path, policy):
    from pipeline.checkpoint import Checkpoint, fingerprint
    from pipeline.loop import make_optimizer

    opt = make_optimizer(policy.parameters(), "adamw", 1e-3)
    old = Checkpoint(tmp_path / "ck", 1, fingerprint({"lr": 1e-3}))
    old.save(policy, opt, {"step": 5})
    assert old.restore(policy, opt)["step"] == 5
    assert Checkpoint(tmp_path / "ck", 1, fingerprint({"lr": 2e-3})).restore(policy, opt) is None
    assert not (tmp_path / "ck").exists()


def test_a_checkpoint_whose_points_are_gone_starts_the_run_again(tmp_path, policy):
    from pipeline.checkpoint import Checkpoint, fingerprint
    from pipeline.loop import Trajectory, make_optimizer

    opt = make_optimizer(policy.parameters(), "adamw", 1e-3)
    ckpt = Checkpoint(tmp_path / "ck", 1, fingerprint({"lr": 1e-3}))
    ckpt.save(policy, opt, {"done": 6})
    points = Trajectory([0.25, 0.75], "dpo.trajectory", tmp_path / "at", ckpt)
    points.plan(20, policy, None)
    assert points.steps == {5: 0.25, 15: 0.75}
    assert ckpt.restore(policy, opt, points.kept) is None, "the point at step 5 was never kept"
    assert not (tmp_path / "ck").exists()
