"""The paper preset's plan, from a dry run (nothing is downloaded): every stage, every swept value
and seed, one GPU per torch job, and torchrun when the trainers run data-parallel."""

import itertools
import re

import pytest
import yaml
from runner import REPO, side_by_side, snakemake

pytestmark = pytest.mark.slow  # runs Snakemake or several processes: not in the inner loop

PRESET = REPO / "workflow" / "presets" / "paper.yaml"
PAPER_MICRO = REPO / "tests" / "configs" / "paper_micro.yaml"
GPU_RULES = {
    "sft",
    "sample",
    "score",
    "reference",
    "train_pairwise",
    "train_ppo",
    "evaluate",
    "evaluate_reference",
    "best_of_n",
}
SWEPT = {"dpo": "beta", "cringe": "b", "ppo": "target_kl"}


def plan(workdir, *targets, config=None) -> list[dict]:
    """Each planned job of a dry run: its rule, wildcards, resources and shell command."""
    out = snakemake(
        workdir, "-n", "--printshellcmds", *targets, config=config, configfile=PRESET
    ).stdout
    jobs = []
    for block in re.split(r"\n(?=\[.*\]\n(?:local)?rule )", out)[1:]:
        job = {"rule": re.search(r"rule (\w+):", block)[1]}
        for key in ("wildcards", "resources"):
            line = re.search(rf"^\s+{key}: (.*)$", block, re.M)
            job[key] = dict(kv.split("=", 1) for kv in line[1].split(", ")) if line else {}
        job["shell"] = block.strip().splitlines()[-1]
        jobs.append(job)
    return jobs


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    return yaml.safe_load(PRESET.read_text()), plan(tmp_path_factory.mktemp("paper"))


def test_every_stage_sweep_value_and_seed_is_planned(paper):
    preset, jobs = paper
    rules = {j["rule"] for j in jobs}
    assert rules == {
        "data",
        "tokenizer",
        "prompts",
        "sft",
        "sample",
        "score",
        "pairs",
        "reference",
        "train_pairwise",
        "train_ppo",
        "evaluate",
        "evaluate_reference",
        "table",
        "plots",
        "side_by_side",
        "all",
        "best_of_n",
        "optimal",
        "comparison",
    }  # pi*'s pool and the comparison
    seeds = preset["train"]["seeds"]
    expected = {
        (m, float(v), s) for m in SWEPT for v, s in itertools.product(preset[m][SWEPT[m]], seeds)
    }
    trained = [
        (j["wildcards"]["method"], float(j["wildcards"]["value"]), int(j["wildcards"]["seed"]))
        for j in jobs
        if j["rule"].startswith("train_")
    ]
    assert sorted(trained) == sorted(expected) and len(expected) == 4 * 3 + 2 * 3 + 4 * 3
    evaluated = [j["wildcards"]["policy"] for j in jobs if j["rule"] == "evaluate"]
    assert len(evaluated) == len(set(evaluated)) == len(expected)
    assert [j["rule"] for j in jobs].count("evaluate_reference") == 1  # pi_ref's
    # the DPO paper's batch order, in which a prompt's pairs share their responses
    assert all(
        '"batch_order": "prompt"' in j["shell"] for j in jobs if j["rule"] == "train_pairwise"
    )


def test_torch_jobs_ask_for_a_gpu_and_the_preset_memory(paper):
    preset, jobs = paper
    gpu, cpu = preset["resources"]["gpu_rules"], preset["resources"]["cpu_rules"]
    for job in jobs:
        if job["rule"] == "all":
            continue
        res = job["resources"]
        wanted = gpu if job["rule"] in GPU_RULES else cpu
        assert res.get("gpu") == (str(gpu["gpu"]) if job["rule"] in GPU_RULES else None), job[
            "rule"
        ]
        assert (int(res["mem_mb"]), int(res["runtime"])) == (wanted["mem_mb"], wanted["runtime"])


def test_data_parallel_trainers_ask_for_their_gpus_and_run_under_torchrun(tmp_path):
    jobs = plan(tmp_path, "results/table_full.csv", config={"resources": {"data_parallel": 4}})
    rounds = {"sample_round", "score_round", "reference_round", "train_round"}
    assert rounds < {j["rule"] for j in jobs}  # the full table has DPO's and Cringe's 2nd rounds
    for job in jobs:
        parallel = job["rule"] in ("sft", "train_pairwise", "train_ppo", "train_round")
        if job["rule"] in GPU_RULES | rounds:
            assert job["resources"]["gpu"] == ("4" if parallel else "1"), job["rule"]
            assert (
                "torchrun --standalone --nproc_per_node 4 -m pipeline." in job["shell"]
            ) == parallel


# SmolLM2's Llama as it adds no BOS is GPT-2's case for the pipeline (tests/test_families.py
# checks its tokens; tests/test_pretrained.py runs it from a GGUF file to SFT); as it adds a BOS
# (llama_bos) it runs here. Another family than GPT-2 trains only DPO, to keep the suite short:
# what a family changes (its tokens, BOS, padding, log-probs) runs in every stage of DPO's path,
# sampling and the exact KL included; Cringe and PPO add their own losses, not family handling
# (PPO's value head on each family: tests/test_families.py).
FAMILIES = ["gpt2", "llama_bos", "qwen2"]


@pytest.fixture(scope="module")
def family_studies(tmp_path_factory, hub_inputs) -> dict:
    """The preset to results/table.csv on each family, the three runs side by side: each is a
    chain of jobs that mostly start Python and import torch, one core's work at a time."""
    classifier, positive = hub_inputs["classifiers"]["siebert"]
    runs, methods = {}, {}
    for family in FAMILIES:
        config = yaml.safe_load(PAPER_MICRO.read_text())
        config["data"] |= {"path": str(hub_inputs["imdb"])}
        config["policy"] = {"init": str(hub_inputs["policies"][family])}
        methods[family] = ["dpo", "cringe", "ppo"]  # the preset's
        if family != "gpt2":
            methods[family] = ["dpo"]
            config["train"] |= {"methods": methods[family]}
            config["iterative"] = {"methods": ["dpo"]}  # rounds (not run here) of trained methods
        config["reward"] |= {"model": str(classifier), "positive_label": positive}
        workdir = tmp_path_factory.mktemp(family)
        runs[workdir] = (["--cores", "2", "results/table.csv"], config, PRESET)
    side_by_side(runs)
    return {family: (workdir, methods[family]) for family, workdir in zip(FAMILIES, runs)}


@pytest.mark.parametrize("family", FAMILIES)
def test_the_preset_runs_end_to_end_on_inputs_in_the_hubs_formats(
    family_studies, hub_inputs, family
):
    """The preset, unchanged but for local paths and tests/configs/paper_micro.yaml: SFT text
    from `train` and `unsupervised` (labels -1), evaluation prompts from `test`, a siebert-style
    classifier as the reward, and as the policy the paper's `gpt2` or a model of another family
    (tests/hub_formats.py: SmolLM2's Llama with a tokenizer that adds its BOS, Qwen2)."""
    import pandas as pd

    from pipeline.stages import data

    workdir, methods = family_studies[family]
    preset = yaml.safe_load(PRESET.read_text())
    assert (
        preset["data"]["split"] == ["train", "unsupervised"]
        and preset["data"]["eval_split"] == "test"
    )
    table = pd.read_csv(workdir / "results/table.csv")
    assert sorted(table.loc[table["kind"] == "policy", "method"]) == sorted(["pi_ref", *methods])
    assert (table["kl"] >= 0).all() and table["sentiment"].between(0, 1).all()
    assert table.loc[table["method"] == "pi_ref", "kl"].item() == 0
    sft = pd.read_parquet(workdir / "results/data/sft.parquet")
    assert sft["label"].isna().any() and sft["label"].notna().any()  # unsupervised and train
    evaluated = set(pd.read_parquet(workdir / "results/data/eval.parquet")["text"])
    test_split = pd.read_parquet(hub_inputs["imdb"] / "plain_text/test-00000-of-00001.parquet")
    assert evaluated <= {data.clean_text(t) for t in test_split["text"]}
