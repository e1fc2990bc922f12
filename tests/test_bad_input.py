"""Bad input fails early with one clear line naming the problem, and leaves no partial output."""

import pandas as pd
import pytest
from runner import REPO, planned_jobs, snakemake

pytestmark = pytest.mark.slow  # runs Snakemake or several processes: not in the inner loop


def dry_run_error(tmp_path, config) -> str:
    proc = snakemake(tmp_path, "-n", config=config, check=False)
    assert proc.returncode != 0
    return proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "config, message",
    [
        ({"sft": {"lrr": 0.1}}, "unknown key(s) ['lrr'] under sft"),
        ({"bogus": 1}, "unknown key(s) ['bogus'] under (top level)"),
        ({"sft": {"lr": "fast"}}, "config key sft.lr: 'fast' is not of type 'number'"),
        (
            {"sample": {"top_p": 1.5}},
            "config key sample.top_p: 1.5 is greater than the maximum of 1",
        ),
        ({"prompts": {"min_tokens": 9}}, "prompts.min_tokens (9) > prompts.max_tokens (8)"),
        ({"sample": {"max_new_tokens": 30}}, "exceeds policy.n_positions (32)"),
        (
            {"sft": {"max_length": 100}},
            "config: sft.max_length = 100 exceeds policy.n_positions (32)",
        ),
        (
            {"ppo": {"minibatch_size": 16}},
            "config: ppo.minibatch_size (16) exceeds ppo.rollout_size (8)",
        ),
        (
            {"policy": {"init": "./models/nowhere"}},
            "policy.init: model path './models/nowhere' does not exist",
        ),
        ({"reward": {"backend": "hf"}}, "reward.model is required when reward.backend is 'hf'"),
        ({"data": {"source": "file"}}, "data.path is required when data.source is 'file'"),
        (
            {"side_by_side": {"prompts": 7}},
            "side_by_side.prompts (7) exceeds evaluate.n_prompts (6)",
        ),
        ({"train": {"seeds": []}}, "config key train.seeds: [] should be non-empty"),
        ({"train": {"seeds": [-1]}}, "config key train.seeds.0: -1 is less than the minimum of 0"),
        (
            {"data": {"source": "file", "path": "/no/such.csv"}},
            "config: data.path '/no/such.csv' (data.source file) does not exist",
        ),
        (
            {"policy": {"lora": {"r": 8, "alpha": 16}}},
            "config: policy.lora adapts a pretrained policy, and policy.init is scratch",
        ),
        (
            {"dpo": {"trajectory": [0.5, 1.0]}},
            "config key dpo.trajectory.1: 1.0 is greater than or equal to the maximum of 1",
        ),
        (
            {"resources": {"threads": {"train": 0}}},
            "config key resources.threads.train: 0 is less than the minimum of 1",
        ),
    ],
)
def test_config_errors_name_the_key_before_any_job_runs(tmp_path, config, message):
    text = dry_run_error(tmp_path, config)
    assert message in text and "Traceback" not in text
    assert not (tmp_path / "results").exists()


def test_a_pretrained_policy_is_checked_against_its_own_positions(tmp_path, hub_inputs):
    gpt2 = hub_inputs["gpt2"]
    text = dry_run_error(tmp_path, {"policy": {"init": str(gpt2)}, "sft": {"max_length": 2000}})
    assert (
        f"config: sft.max_length = 2000 exceeds the n_positions of policy.init '{gpt2}' (1024)"
        in text
    )
    assert "Traceback" not in text and not (tmp_path / "results").exists()


def test_a_downloaded_hub_policy_is_checked_from_the_hub_cache(tmp_path, hub_inputs):
    """After `download`, gpt2-large's config lies in the Hugging Face cache, laid out as
    huggingface_hub leaves it: the check reads it there, offline, before any job runs."""
    snapshot = tmp_path / "hf" / "hub" / "models--gpt2-large" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_bytes((hub_inputs["gpt2"] / "config.json").read_bytes())
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    work = tmp_path / "work"
    work.mkdir()
    proc = snakemake(
        work,
        "-n",
        config={"policy": {"init": "gpt2-large"}, "sft": {"max_length": 2000}},
        env={"HF_HOME": str(tmp_path / "hf")},
        check=False,
    )
    assert proc.returncode != 0
    assert (
        "config: sft.max_length = 2000 exceeds the n_positions of policy.init 'gpt2-large' (1024)"
    ) in proc.stdout + proc.stderr


def test_a_hub_policy_not_yet_downloaded_is_checked_when_sft_reads_its_config(
    tmp_path, hub_inputs, sft_args
):
    """The same check in the SFT stage, for a policy whose config was not on disk at the start."""
    from conftest import SFT_PARAMS

    from pipeline.stages import sft

    params = SFT_PARAMS | {
        "init": str(hub_inputs["gpt2"]),
        "max_length": 2000,
        "epochs": 1,
        "batch_size": 4,
        "checkpoint_every": 10,
    }
    with pytest.raises(ValueError, match="sft.max_length = 2000 exceeds the n_positions"):
        sft.main(sft_args(params, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def run_failing_data_stage(tmp_path, data_config):
    proc = snakemake(
        tmp_path,
        "--cores",
        "1",
        "results/data/sft.parquet",
        config={"data": data_config},
        check=False,
    )
    assert proc.returncode != 0
    assert (
        not list((tmp_path / "results" / "data").glob("*"))
        if (tmp_path / "results" / "data").exists()
        else True
    )
    return (tmp_path / "results/logs/data.log").read_text()


def test_local_file_without_a_text_column(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["good film"] * 50}).to_csv(path, index=False)
    log = run_failing_data_stage(tmp_path, {"source": "file", "path": str(path)})
    assert (
        log.strip().splitlines()[-1]
        == f"error: data file {path}: no `text` column (columns: ['review'])"
    )


def test_fewer_reviews_than_requested_prompts(tmp_path):
    path = tmp_path / "reviews.parquet"
    pd.DataFrame({"text": [f"review {i}" for i in range(10)]}).to_parquet(path)
    log = run_failing_data_stage(tmp_path, {"source": "file", "path": str(path)})
    assert (
        "the data has 10 usable reviews, fewer than the 18 prompts requested"
        in log.splitlines()[-1]
    )


def test_hub_id_while_offline_fails_in_the_first_stage_that_loads_it(tmp_path):
    path = tmp_path / "reviews.parquet"
    pd.DataFrame({"text": [f"review number {i} of many" for i in range(40)]}).to_parquet(path)
    proc = snakemake(
        tmp_path,
        "--cores",
        "1",
        "results/tokenizer",
        config={"data": {"source": "file", "path": str(path)}, "policy": {"init": "gpt2-large"}},
        check=False,
    )
    assert proc.returncode != 0
    last = (tmp_path / "results/logs/tokenizer.log").read_text().strip().splitlines()[-1]
    assert "policy.init 'gpt2-large': the Hugging Face hub is unreachable (offline)" in last
    assert not (tmp_path / "results/tokenizer").exists()
    assert planned_jobs(
        tmp_path,
        config={"data": {"source": "file", "path": str(path)}, "policy": {"init": "gpt2-large"}},
    )


def test_the_default_profile_applies_to_a_plain_run(tmp_path):
    """profiles/default beside the Snakefile: a plain run (no --profile) prints a failing job's
    log, whose last line names the problem, and redoes incomplete jobs."""
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["good film"] * 50}).to_csv(path, index=False)
    proc = snakemake(
        tmp_path,
        "--cores",
        "1",
        "results/data/sft.parquet",
        config={"data": {"source": "file", "path": str(path)}},
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Using workflow specific profile profiles/default" in out
    assert f"error: data file {path}: no `text` column" in out  # show-failed-logs
    assert "rerun-incomplete" in (REPO / "profiles/default/config.yaml").read_text()


NO_SECTION = """
from pipeline.methods import PAIRS, Method, register
register(Method("sectionless", "x", "olive", "beta", PAIRS, "reference-free", loss=lambda: 0,
                settings_from="dpo"))
"""


@pytest.mark.parametrize(
    "source, message",
    [
        (None, "train.extensions: 'no_such_extension_module' failed to load: ModuleNotFoundError"),
        ("raise RuntimeError('not today')", "failed to load: RuntimeError: not today"),
        ("def broken(:\n", "has a syntax error at line 1"),
        (
            "from pipeline.methods import METHODS, register\nregister(METHODS['dpo'])",
            "failed to load: ValueError: method name 'dpo' is taken",
        ),
        (NO_SECTION, "registered without a `section` schema"),
    ],
)
def test_an_extension_that_does_not_load_is_named_in_one_line(tmp_path, source, message):
    entry = "no_such_extension_module"
    if source is not None:
        entry = str(tmp_path / "ext.py")
        (tmp_path / "ext.py").write_text(source)
    text = dry_run_error(tmp_path, {"train": {"extensions": [entry]}})
    assert message in text and "Traceback" not in text
    assert entry in text
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"train": {"tracking": "mlflow"}},
            "config: train.tracking = 'mlflow' needs the `mlflow` package, which is not installed",
        ),
        ({"policy": {"init": "{folder}"}}, "is a folder without config.json, not a model folder"),
        ({"train": {"methods": []}}, "config key train.methods: [] should be non-empty"),
        (
            {"resources": {"data_parallel": 3}},
            "config: sft.batch_size (16) is not a multiple of resources.data_parallel (3)",
        ),
    ],
)
def test_what_only_a_job_found_before_is_refused_by_the_dry_run(tmp_path, config, message):
    if config.get("policy"):
        (tmp_path / "folder").mkdir()
        config = {"policy": {"init": str(tmp_path / "folder")}}
    text = dry_run_error(tmp_path, config)
    assert message in text and "Traceback" not in text
    assert not (tmp_path / "results").exists()


def test_a_narrowed_method_list_narrows_the_rounds(tmp_path):
    """iterative.methods follows train.methods unless set (config.yaml leaves it null; the micro
    config sets it to [dpo], so the test sets it back): Cringe alone plans Cringe's round only."""
    config = {"train": {"methods": ["cringe"], "full_methods": []}, "iterative": {"methods": None}}
    jobs = planned_jobs(tmp_path, config=config, targets=["results/table_full.csv"])
    assert jobs["train_round"] == 1 and jobs["train_pairwise"] == 1


def test_a_wrong_value_is_named_before_a_missing_package(tmp_path):
    """The smollm2 preset names a GGUF file inside a package the tests do not install; a wrong
    value in it is still what the dry run names."""
    proc = snakemake(
        tmp_path,
        "-n",
        config={"evaluate": {"n_prompts": 999}},
        configfile=REPO / "workflow/presets/smollm2.yaml",
        check=False,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in text
    assert "config: evaluate.n_prompts (999) exceeds data.n_eval_prompts (64)" in text
