"""A cached artifact cut short (a full disk, a copy that stopped) stops the stage that reads it in
one line naming the file and saying that deleting it rebuilds it; `python -m pipeline.artifacts`
lists every broken one of a study."""

import json
import shutil
import subprocess
import sys

import pytest
from conftest import shared_pairs

from pipeline import artifacts, cli
from pipeline.stages import reference


def cut_in_half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def study(tmp_path, policy_dir):
    """A results folder with a policy, a table and a summary, all whole."""
    root = tmp_path / "results"
    shutil.copytree(policy_dir, root / "policies/dpo/0.1/seed0/model")
    shared_pairs(4).to_parquet(root / "pairs.parquet")
    (root / "eval").mkdir()
    (root / "eval/summary.json").write_text(json.dumps({"sentiment": 0.5}))
    return root


def run_reference(root, policy):
    argv = ["--params", json.dumps({"batch_size": 4}), "--pairs", str(root / "pairs.parquet")]
    argv += ["--policy", str(policy), "--out", str(root / "reference.parquet")]
    with pytest.raises(SystemExit) as exit_:
        cli.run(reference.main, argv)
    return exit_.value.code


def test_a_whole_study_has_no_broken_artifact(study):
    assert artifacts.problems(study) == []


def test_weights_cut_short_stop_the_stage_in_one_line_naming_the_file(study, capsys):
    weights = study / "policies/dpo/0.1/seed0/model/model.safetensors"
    cut_in_half(weights)
    assert run_reference(study, weights.parent) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {weights}: does not load (")
    assert "delete it and the next run rebuilds it" in err[0]
    assert not (study / "reference.parquet").exists()
    assert artifacts.problems(study) == [err[0].removeprefix("error: ")]


def test_a_table_cut_short_and_a_model_folder_missing_its_config_are_listed(study, capsys):
    cut_in_half(study / "pairs.parquet")
    (study / "policies/dpo/0.1/seed0/model/config.json").unlink()
    (study / "eval/summary.json").write_text('{"sentiment": 0.')
    assert run_reference(study, study / "policies/dpo/0.1/seed0/model") == 1
    assert capsys.readouterr().err.startswith(f"error: {study / 'pairs.parquet'}: does not load")
    listed = subprocess.run(
        [sys.executable, "-m", "pipeline.artifacts", str(study)], capture_output=True, text=True
    )
    assert listed.returncode == 1
    lines = listed.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        str(study / "policies/dpo/0.1/seed0/model"),
        str(study / "pairs.parquet"),
        str(study / "eval/summary.json"),
    ]
    assert "no config.json" in lines[0] and "3 broken artifact(s)" in listed.stderr
