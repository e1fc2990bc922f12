"""The download target, which a cluster user runs on the login node before submitting: here the
hub is unreachable, so it must name every hub id and say what to do; with local folders it does
nothing."""

import pytest
from runner import REPO, snakemake

pytestmark = pytest.mark.slow  # runs Snakemake or several processes: not in the inner loop

PRESET = REPO / "workflow" / "presets" / "paper.yaml"
HUB_IDS = {
    "data.path": "stanfordnlp/imdb",
    "policy.init": "gpt2-large",
    "reward.model": "siebert/sentiment-roberta-large-english",
}


def download(workdir, config=None, env=None):
    proc = snakemake(
        workdir, "--cores", "1", "download", config=config, configfile=PRESET, env=env, check=False
    )
    return proc.returncode, (workdir / "results/logs/download.log").read_text()


def test_offline_it_names_each_hub_id_and_says_what_to_do(tmp_path):
    rc, log = download(tmp_path)
    assert rc != 0
    error = log[log.index("error: ") :]
    assert error.startswith("error: could not download 3 of 3 inputs:")
    for key, name in HUB_IDS.items():
        assert f"  {key} '{name}': " in error
    assert "HF_HUB_OFFLINE is set: unset it here." in error
    assert "on a machine with internet access (a cluster's login node)" in error
    assert "Traceback" not in log


def test_with_the_hub_unreachable_each_model_id_is_named(tmp_path, hub_inputs):
    rc, log = download(
        tmp_path,
        config={"data": {"path": str(hub_inputs["imdb"])}},
        env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"},
    )
    assert rc != 0
    error = log[log.index("error: ") :]
    assert error.startswith("error: could not download 2 of 2 inputs:")
    assert "policy.init 'gpt2-large': " in error and "Connection refused" in error
    assert "reward.model 'siebert/sentiment-roberta-large-english': " in error
    assert "data.path" not in error and "HF_HUB_OFFLINE is set" not in error


def test_with_local_folders_it_does_nothing(tmp_path, hub_inputs):
    classifier, positive = hub_inputs["classifiers"]["siebert"]
    rc, log = download(
        tmp_path,
        config={
            "data": {"path": str(hub_inputs["imdb"])},
            "policy": {"init": str(hub_inputs["gpt2"])},
            "reward": {"model": str(classifier)},
        },
    )
    assert rc == 0 and "nothing to download: every input is local or built here" in log
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["logs"]


def test_the_embedded_default_has_nothing_to_download(tmp_path):
    rc, log = download(
        tmp_path,
        config={
            "data": {"source": "embedded", "path": None},
            "policy": {"init": "scratch"},
            "reward": {"backend": "vader", "model": None},
        },
    )
    assert rc == 0 and "nothing to download" in log
