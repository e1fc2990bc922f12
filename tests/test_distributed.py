"""Data parallelism (torchrun, 2 CPU processes on gloo) and gradient accumulation give the model
that one process training on the whole batch gives, with the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import PAIRWISE_PARAMS, PPO_PARAMS, SFT_PARAMS
from safetensors.torch import load_file

# CPU processes on gloo, also where a GPU is visible (one GPU cannot hold two NCCL ranks)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def launch(module, args, out, processes=1) -> tuple[subprocess.Popen, Path]:
    """Start training; `module`: a stage (`pipeline.<module>`) or a script in tests/. The runs of
    a test go side by side: each spends most of its time starting Python."""
    launcher = TORCHRUN if processes > 1 else [sys.executable]
    script = (
        [str(Path(__file__).parent / module)]
        if module.endswith(".py")
        else ["-m", f"pipeline.stages.{module}"]
    )
    with open(out.with_suffix(".log"), "w") as log:
        return subprocess.Popen(
            launcher + script + args(out), env=ENV, stdout=log, stderr=subprocess.STDOUT
        ), out


def trained(run: tuple[subprocess.Popen, Path]):
    """The weights and metrics of a launched run, once it has ended."""
    proc, out = run
    assert proc.wait(timeout=300) == 0, out.with_suffix(".log").read_text()
    return load_file(out / "model" / "model.safetensors"), pd.read_csv(out / "metrics.csv")


def assert_same_training(a, b, columns=("loss", "grad_norm")):
    """Same weights, and the same loss and gradient norm at every step (the gradient norm, taken
    before clipping, catches a wrongly scaled gradient that Adam's update would hide)."""
    (weights_a, metrics_a), (weights_b, metrics_b) = a, b
    assert weights_a.keys() == weights_b.keys()
    for k in weights_a:
        torch.testing.assert_close(
            weights_a[k], weights_b[k], rtol=1e-3, atol=1e-4, msg=lambda m, k=k: f"{k}: {m}"
        )
    for column in columns:
        torch.testing.assert_close(
            torch.tensor(metrics_a[column].dropna().to_numpy()),
            torch.tensor(metrics_b[column].dropna().to_numpy()),
            rtol=1e-4,
            atol=1e-6,
            msg=lambda m, c=column: f"{c}: {m}",
        )


pytestmark = [
    pytest.mark.skipif(
        not torch.distributed.is_gloo_available(), reason="this torch build has no gloo backend"
    ),
    pytest.mark.slow,  # several processes: not in the inner loop
]


def test_dpo_on_two_processes_and_in_micro_batches_equals_one_process(pair_files, policy_dir):
    params = PAIRWISE_PARAMS | {
        "method": "dpo",
        "beta": 0.1,
        "lr": 1e-3,
        "batch_size": 8,
        "epochs": 1,
        "warmup_steps": 2,
        "reward_every": 50,
        "max_new_tokens": 3,
    }

    def run(micro_batch_size, processes=1, gradient_checkpointing=False):
        p = params | {
            "micro_batch_size": micro_batch_size,
            "gradient_checkpointing": gradient_checkpointing,
        }
        name = f"dpo_{processes}x{micro_batch_size}{'_gc' if gradient_checkpointing else ''}"

        def args(out):
            return [
                "--params",
                json.dumps(p),
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
            ]

        return launch("preference", args, pair_files / name, processes)

    # 8 rows at once, in micro-batches of 3, 3 and 2, over 2 processes, with checkpointing
    whole, *same = map(
        trained, [run(None), run(3), run(2, processes=2), run(None, gradient_checkpointing=True)]
    )
    before = load_file(policy_dir / "model.safetensors")
    assert any(not torch.allclose(before[k], whole[0][k]) for k in before), "the policy moved"
    for other in same:
        assert_same_training(whole, other)


def test_sft_on_two_processes_equals_one_process(tmp_path, sft_args):
    params = SFT_PARAMS | {"epochs": 1, "batch_size": 8, "checkpoint_every": 0}

    def run(micro_batch_size, processes):
        p = params | {"micro_batch_size": micro_batch_size}
        return launch(
            "sft",
            lambda out: sft_args(p, out),
            tmp_path / f"sft_{processes}x{micro_batch_size}",
            processes,
        )

    # reviews of different lengths: the loss is a mean over the global batch's tokens
    assert_same_training(*map(trained, [run(None, 1), run(3, 2)]))


def test_ppo_on_two_processes_equals_one_process(tmp_path, policy_dir):
    """Each process samples, scores and evaluates half of every rollout and takes half of every
    minibatch; with completions fixed by the prompt, the run must equal the one-process run."""
    pd.DataFrame({"prompt_ids": [[5, 6], [7, 8, 9], [10], [11, 12], [13, 14, 15, 16]]}).to_parquet(
        tmp_path / "prompts.parquet"
    )
    params = PPO_PARAMS | {"iterations": 3, "checkpoint_every": 0}

    def args(out):
        return [
            "--params",
            json.dumps(params),
            "--prompts",
            str(tmp_path / "prompts.parquet"),
            "--policy",
            str(policy_dir),
            "--model",
            str(out / "model"),
            "--metrics",
            str(out / "metrics.csv"),
        ]

    one, two = map(
        trained,
        [
            launch("ppo_fixed_rollouts.py", args, tmp_path / "one"),
            launch("ppo_fixed_rollouts.py", args, tmp_path / "two", processes=2),
        ],
    )
    before = load_file(policy_dir / "model.safetensors")
    assert any(not torch.allclose(before[k], one[0][k]) for k in before), "the policy moved"
    assert_same_training(
        one,
        two,
        columns=(
            "reward",
            "kl",
            "kl_coef",
            "policy_loss",
            "value_loss",
            "clipfrac",
            "entropy",
            "response_length",
        ),
    )


def test_a_batch_that_does_not_split_over_the_processes_is_refused():
    from pipeline.distributed import World

    with pytest.raises(ValueError, match="dpo.batch_size = 9 is not a multiple of the 2 processes"):
        World(rank=0, size=2).micro_batches(torch.arange(9), None, "dpo.batch_size")
    assert [t.tolist() for t in World(1, 2).micro_batches(torch.arange(8), 3, "k")] == [
        [4, 5, 6],
        [7],
    ]
