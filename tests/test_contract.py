"""One contract for the five trainers (SFT, the pairwise trainer, the reward model, PPO, the
online methods), each run through its stage's entry point: its tracker's run is named after what
it trains, and a non-finite loss stops it at once naming the trainer and the step. (The rest of
the contract: the random streams every trainer takes from `pipeline.loop.generators`; resuming
after a kill, tests/test_resume.py.)"""

import importlib
import json

import pandas as pd
import pytest
from conftest import ONLINE_PARAMS, PAIRWISE_PARAMS, PPO_PARAMS, REWARD_MODEL_PARAMS, SFT_PARAMS

# trainer: (its module, its params, the run name its tracker uses)
TRAINERS = {
    "sft": ("sft", SFT_PARAMS | {"epochs": 1, "batch_size": 4, "checkpoint_every": 0}, "sft"),
    "pairwise": (
        "preference",
        PAIRWISE_PARAMS | {"method": "dpo", "beta": 0.1, "epochs": 1},
        "dpo/0.1/seed0",
    ),
    "reward_model": (
        "reward_model",
        REWARD_MODEL_PARAMS | {"batch_size": 4, "epochs": 1},
        "reward_model",
    ),
    "ppo": ("ppo", PPO_PARAMS | {"iterations": 2, "checkpoint_every": 0}, "ppo/6.0/seed0"),
    "online": (
        "online",
        ONLINE_PARAMS | {"iterations": 2, "checkpoint_every": 0},
        "grpo/0.04/seed0",
    ),
}


@pytest.fixture
def job(request, tmp_path, pair_files, policy_dir, sft_args):
    """The trainer's stage, ready to run in this process: (module, params, run name, run), where
    run(params) calls its entry point on inputs written to tmp_path."""
    module, params, name = TRAINERS[request.param]
    pd.DataFrame({"prompt_ids": [[5, 6], [7, 8, 9], [10], [11, 12]]}).to_parquet(
        tmp_path / "prompts.parquet"
    )
    out = tmp_path / "out"
    outputs = ["--model", str(out / "model"), "--metrics", str(out / "metrics.csv")]
    inputs = {
        "sft": lambda p: sft_args(p, out),
        "preference": lambda p: [
            "--pairs", str(pair_files / "pairs.parquet"),
            "--reference", str(pair_files / "ref.parquet"),
            "--policy", str(policy_dir),
        ] + outputs,
        "reward_model": lambda p: [
            "--pairs", str(pair_files / "pairs.parquet"),
            "--policy", str(policy_dir),
            "--summary", str(out / "summary.json"),
        ] + outputs,
        "ppo": lambda p: [
            "--prompts", str(tmp_path / "prompts.parquet"), "--policy", str(policy_dir),
        ] + outputs,
    }  # fmt: skip
    inputs["online"] = inputs["ppo"]
    stage = importlib.import_module(f"pipeline.stages.{module}")

    def run(p):
        stage.main(["--params", json.dumps(p)] + inputs[module](p))

    return module, params, name, run


ALL = pytest.mark.parametrize("job", list(TRAINERS), indirect=True)


@ALL
def test_the_tracker_run_is_named_after_what_it_trains(job, tmp_path):
    _, params, name, run = job
    run(params | {"tracking": "tensorboard", "tracking_dir": str(tmp_path / "tb")})
    runs = {
        p.parent.relative_to(tmp_path / "tb").as_posix()
        for p in (tmp_path / "tb").rglob("events.*")
    }
    assert runs == {name}


@ALL
def test_a_non_finite_loss_stops_the_run_naming_the_trainer_and_the_step(job, tmp_path):
    """An infinite learning rate: the first update makes the weights inf or nan, so the next loss
    is not finite; nothing is written."""
    module, params, name, run = job
    trainer = params.get("method", name)
    with pytest.raises(FloatingPointError, match=rf"^{trainer}: non-finite value at step 1 \("):
        run(params | {"lr": float("inf"), "warmup_steps": 1})
    assert not (tmp_path / "out" / "model").exists()


@pytest.mark.parametrize("job", ["ppo", "online"], indirect=True)
def test_a_checkpoint_is_stale_once_the_learned_reward_model_changes(job, tmp_path, monkeypatch):
    """Snakemake reruns a trainer whose reward model was retrained, and the rerun must not resume
    the checkpoint the old reward model led to: the fingerprint reads the reward model's files."""
    from pipeline import checkpoint, loop

    _, params, _, run = job
    seen = []

    class Fingerprinted(Exception):
        pass

    def fingerprint(*args):
        seen.append(checkpoint.fingerprint(*args))
        raise Fingerprinted

    monkeypatch.setattr(loop, "fingerprint", fingerprint)  # start_job's
    learned = tmp_path / "reward_model"
    learned.mkdir()
    for weights in (b"before", b"after retraining"):
        (learned / "model.safetensors").write_bytes(weights)
        with pytest.raises(Fingerprinted):
            run(params | {"reward_model": str(learned)})
    assert seen[0] != seen[1]
