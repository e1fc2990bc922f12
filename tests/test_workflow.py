"""The whole DAG on the micro config, through snakemake; reruns after a config edit are precise."""

import subprocess
import sys

import pandas as pd
import pytest

from runner import REPO, planned_jobs, snakemake


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    snakemake(workdir, "--cores", "2")
    return workdir


def test_the_dag_runs_to_the_pairs(study):
    pairs = pd.read_parquet(study / "results/pairs.parquet")
    assert len(pairs) > 0
    assert (pairs.groupby("prompt_id").size() <= 6).all()
    assert (pairs["chosen_score"] > pairs["rejected_score"]).all()
    prompts = pd.read_parquet(study / "results/prompts/eval.parquet")
    assert prompts["prompt_ids"].map(len).between(2, 8).all()
    for rule in ["data", "tokenizer", "sft", "prompts_train", "prompts_eval", "sample", "score",
                 "pairs"]:
        assert (study / f"results/logs/{rule}.log").stat().st_size > 0
    weights = list((study / "results/sft/model").iterdir())
    assert any(p.suffix == ".safetensors" for p in weights)
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in weights)


def test_nothing_reruns_without_a_change(study):
    assert planned_jobs(study) == {}


@pytest.mark.parametrize("edit, expected", [
    ({"sample": {"max_new_tokens": 6}}, {"sample", "score", "pairs", "all"}),
    ({"reward": {"batch_size": 7}}, {"score", "pairs", "all"}),
    ({"prompts": {"seed": 1}}, {"prompts", "sample", "score", "pairs", "all"}),
    ({"sft": {"lr": 1.0e-3}}, {"sft", "sample", "score", "pairs", "all"}),
])
def test_a_config_edit_reruns_exactly_the_affected_rules(study, edit, expected):
    assert set(planned_jobs(study, config=edit)) == expected


def test_same_seed_gives_an_identical_pairs_file(study):
    before = (study / "results/pairs.parquet").read_bytes()
    snakemake(study, "--cores", "2", "--forcerun", "sample")
    assert (study / "results/pairs.parquet").read_bytes() == before


def test_lint_reports_nothing():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr
