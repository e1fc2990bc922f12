"""The whole DAG on the micro config, through snakemake; reruns after a config edit are precise."""

import importlib
import json
import logging
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from runner import CORES, MICRO, REPO, planned_jobs, snakemake, why_no_slurm

from pipeline.methods import METHODS, RANKED_PAIRS, RANKINGS
from pipeline.paths import policy_id

pytestmark = pytest.mark.slow  # runs Snakemake or several processes: not in the inner loop

MICRO_CONFIG = yaml.safe_load(MICRO.read_text())
# the methods of the micro study's tables: config.yaml's train section extended by the micro one's
TRAIN = yaml.safe_load((REPO / "config.yaml").read_text())["train"] | MICRO_CONFIG["train"]


def first_value(method: str):
    """The first swept value a micro study trains: micro.yaml's, else the record's default."""
    record = METHODS[method]
    default = record.section[record.swept]["default"]
    return MICRO_CONFIG.get(method, {}).get(record.swept, default)[0]


@pytest.fixture(scope="module")
def study(micro_study):
    return micro_study


def test_the_dag_runs_to_the_pairs(study):
    pairs = pd.read_parquet(study / "results/pairs.parquet")
    assert len(pairs) > 0
    assert (pairs.groupby("prompt_id").size() <= 6).all()
    assert (pairs["chosen_score"] > pairs["rejected_score"]).all()
    prompts = pd.read_parquet(study / "results/prompts/eval.parquet")
    assert prompts["prompt_ids"].map(len).between(2, 8).all()
    for rule in [
        "data",
        "tokenizer",
        "sft",
        "prompts_train",
        "prompts_eval",
        "sample",
        "score",
        "pairs",
    ]:
        assert (study / f"results/logs/{rule}.log").stat().st_size > 0
    weights = list((study / "results/sft/model").iterdir())
    assert any(p.suffix == ".safetensors" for p in weights)
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in weights)


def test_nothing_reruns_without_a_change(study):
    assert planned_jobs(study) == {}


TRAINERS = {
    "reference",
    "train_pairwise",
    "train_ppo",
    "evaluate",
    "evaluate_reference",
    "table",
    "comparison",
    "plots",
    "side_by_side",
    "all",
}
OPTIMAL = {"best_of_n", "optimal"}  # pi*'s pool: pi_ref's samples of the evaluation prompts


@pytest.mark.parametrize(
    "edit, expected",
    [
        ({"sample": {"max_new_tokens": 6}}, {"sample", "score", "pairs"} | TRAINERS | OPTIMAL),
        ({"reward": {"batch_size": 7}}, {"score", "pairs"} | TRAINERS | OPTIMAL),
        ({"prompts": {"seed": 1}}, {"prompts", "sample", "score", "pairs"} | TRAINERS | OPTIMAL),
        ({"sft": {"lr": 1.0e-3}}, {"sft", "sample", "score", "pairs"} | TRAINERS | OPTIMAL),
    ],
)
def test_a_config_edit_reruns_exactly_the_affected_rules(study, edit, expected):
    assert set(planned_jobs(study, config=edit)) == expected


REPORT = {"table": 1, "comparison": 1, "plots": 1, "side_by_side": 1, "all": 1}


@pytest.mark.parametrize(
    "edit, expected",
    [
        ({"dpo": {"lr": 1.0e-3}}, {"train_pairwise": 2, "evaluate": 2}),  # both betas, not cringe
        # cringe and ppo: the final policy and the point halfway along the run
        ({"cringe": {"tau": 2.0}}, {"train_pairwise": 1, "evaluate": 2}),
        ({"ppo": {"lr": 1.0e-3}}, {"train_ppo": 1, "evaluate": 2}),
        ({"dpo": {"beta": [0.1, 1.0, 5.0]}}, {"train_pairwise": 1, "evaluate": 1}),  # the new value
        ({"reference": {"batch_size": 3}}, {"reference": 1, "train_pairwise": 2, "evaluate": 2}),
        ({"train": {"reward_every": 3}}, {"train_pairwise": 3, "evaluate": 4}),
        ({"evaluate": {"seed": 1}}, {"evaluate": 6, "evaluate_reference": 1}),
    ],
)
def test_a_trainer_edit_reruns_only_its_policies(study, edit, expected):
    assert planned_jobs(study, config=edit) == expected | REPORT


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            {"table": {"seed": 1}},
            {"table", "optimal", "comparison", "plots"},
        ),  # the bootstrap's seed
        ({"side_by_side": {"seed": 1}}, {"side_by_side"}),
    ],
)
def test_a_table_or_samples_page_edit_reruns_only_that_output(study, edit, expected):
    assert set(planned_jobs(study, config=edit)) == expected | {"all"}


def test_an_optimal_frontier_edit_reruns_neither_evaluations_nor_the_default_table(study):
    assert planned_jobs(study, config={"optimal": {"min_ess": 4}}) == {
        "optimal": 1,
        "comparison": 1,
        "plots": 1,
        "all": 1,
    }


def test_a_job_that_failed_after_an_edit_runs_again_with_what_depends_on_it(study, tmp_path):
    """Snakemake deletes a failed job's outputs and does not remake a missing output while the
    outputs below it are present (snakemake/snakemake#1978): without the rules' recipe params the
    next run would say "Nothing to be done" and keep the table of the old config."""
    copy = tmp_path / "study"
    shutil.copytree(study, copy, symlinks=True)
    bad = {"cringe": {"k": 10_000}}  # beyond the vocabulary: the trainer refuses it
    assert snakemake(copy, "--cores", CORES, config=bad, check=False).returncode != 0
    assert not (copy / "results/policies/cringe/0.0/seed0/model").exists()
    assert planned_jobs(copy, config=bad) == {"train_pairwise": 1, "evaluate": 2} | REPORT


def test_each_trainer_wrote_a_policy_and_metrics(study):
    policies = study / "results/policies"
    for method, value in [("dpo", "0.1"), ("dpo", "1.0"), ("cringe", "0.0"), ("ppo", "3.0")]:
        folder = policies / method / value / "seed0"
        assert any(p.suffix == ".safetensors" for p in (folder / "model").iterdir())
        metrics = pd.read_csv(folder / "metrics.csv")
        assert len(metrics) >= 2 and metrics.notna().any().all()
        # the points along the run (cringe.trajectory, ppo.trajectory; none for DPO)
        points = sorted(p.name for p in (folder / "at").iterdir() if not p.name.startswith("."))
        assert points == ([] if method == "dpo" else ["0.5"])
        for name in points:
            assert (folder / "at" / name / "model" / "model.safetensors").is_file()
            point = json.loads((folder / "at" / name / "point.json").read_text())
            assert point["fraction"] == 0.5 and point["step"] == round(point["steps"] / 2)
    dpo = pd.read_csv(policies / "dpo/0.1/seed0/metrics.csv")
    assert {"loss", "reward_accuracy", "reward_margin", "sample_reward"} <= set(dpo.columns)
    ppo = pd.read_csv(policies / "ppo/3.0/seed0/metrics.csv")
    assert {"reward", "kl", "kl_coef", "entropy", "clipfrac", "value_loss"} <= set(ppo.columns)


def test_the_table_has_every_policy_and_kl_is_never_negative(study):
    table = pd.read_csv(study / "results/table.csv")
    policies = table[table["kind"] == "policy"]
    assert sorted(policies["method"]) == ["cringe", "cringe", "dpo", "dpo", "pi_ref", "ppo", "ppo"]
    # a point halfway along the Cringe and PPO runs: its own row, before the final policy's
    assert policies["at"].tolist()[1:] == [1.0, 1.0, 0.5, 1.0, 0.5, 1.0]
    assert (table["kl"] >= 0).all() and (table["kl_reverse"] >= 0).all()
    ref = policies[policies["method"] == "pi_ref"].iloc[0]
    assert ref["kl"] == 0 and ref["kl_reverse"] == 0
    assert (table["ci_over"] == "prompts").all()  # one seed: the intervals cover prompts only
    for name in ["frontier", "sentiment", "training"]:
        assert (study / f"results/plots/{name}.png").stat().st_size > 10_000


def test_the_samples_page_shows_every_policy_on_the_same_prompts(study):
    md = (study / "results/samples.md").read_text()
    blocks = md.split("\n### ")[1:]
    prompts = [b for b in blocks if b.startswith("Prompt ")]
    assert len(prompts) == 4  # side_by_side.prompts
    labels = [
        "pi_ref",
        "dpo beta=0.1 seed 0",
        "dpo beta=1 seed 0",
        "cringe b=0 seed 0, at 0.5 of its run",
        "cringe b=0 seed 0",
        "ppo target_kl=3 seed 0, at 0.5 of its run",
        "ppo target_kl=3 seed 0",
    ]
    for block in prompts:
        rows = [line for line in block.splitlines() if line.startswith("| ")][1:]
        assert [r.split(" | ")[0].removeprefix("| ") for r in rows] == labels
    extremes = blocks[len(prompts) :]
    assert [b.splitlines()[0] for b in extremes] == labels
    assert all(b.count("| highest |") == 2 and b.count("| lowest |") == 2 for b in extremes)
    assert (study / "results/samples.html").read_text().count("<h3>") == len(blocks)
    assert (study / "results/logs/side_by_side.log").stat().st_size > 0


def test_a_run_ends_by_saying_where_to_look(study):
    out = snakemake(study, "--cores", CORES, "--forcerun", "side_by_side").stdout
    where = out.split("Where to look:", 1)[1]
    for path in [
        "results/table.csv",
        "results/plots/",
        "results/samples.md",
        "snakemake --report results/report.html",
    ]:
        assert path in where, path
    assert "Where to look" not in snakemake(study, "--cores", CORES).stdout  # nothing was done


def test_the_comparison_reads_each_point_on_the_other_frontiers(study):
    comparison = pd.read_csv(study / "results/comparison.csv")
    optimal = pd.read_csv(study / "results/optimal.csv")
    pool = pd.read_parquet(study / "results/eval/best_of_n/pool/seed0.parquet")
    assert len(pool) == 6 * 16 and optimal["pool_size"].eq(16).all()
    assert (optimal["kl"] <= np.log(16) + 1e-9).all() and (optimal["ess"] <= 16 + 1e-9).all()
    # the micro study sweeps two DPO betas, and Cringe and PPO have a point halfway along their
    # runs: each a frontier of two points; pi* the other
    assert set(comparison["against"]) == {"dpo", "cringe", "ppo", "optimal"}
    assert set(comparison[comparison["against"] == "dpo"]["method"]) == {"pi_ref", "cringe", "ppo"}
    halfway = comparison[comparison["at"] == 0.5]
    assert set(halfway["method"]) == {"cringe", "ppo"} and len(halfway) == 2 * 3
    inside = comparison[comparison["verdict"] != "outside range"]
    assert (inside["difference_lo"] <= inside["difference"] + 1e-9).all()
    assert (inside["difference"] <= inside["difference_hi"] + 1e-9).all()
    assert set(inside["read_as"]) <= {"interpolated", "lower bound"}
    assert comparison[comparison["verdict"] == "outside range"]["difference"].isna().all()
    assert set(comparison["ci_over"]) == {"prompts"}


def test_the_report_builds(study):
    snakemake(study, "--report", "results/report.html")
    html = (study / "results/report.html").read_text(errors="ignore")
    assert "table.csv" in html and "frontier.png" in html and "samples.html" in html


def test_lint_reports_nothing():
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


@pytest.mark.skipif(
    why_no_slurm() is None,
    reason="tests/test_slurm.py runs the micro study "
    "again, through SLURM, and compares its bytes with this one's",
)
def test_two_runs_with_the_same_seeds_give_byte_identical_results(study, tmp_path_factory):
    """From scratch in another folder: the same pairs and the same table, to the byte."""
    again = tmp_path_factory.mktemp("again")
    snakemake(again, "--cores", CORES)
    for name in ["results/table.csv", "results/pairs.parquet"]:
        assert (again / name).read_bytes() == (study / name).read_bytes(), name


def test_the_full_table_adds_every_other_method(study):
    snakemake(
        study,
        "--cores",
        CORES,
        "results/table_full.csv",
        "results/plots_full/frontier.png",
        "results/comparison_full.csv",
    )
    table = pd.read_csv(study / "results/table_full.csv")
    policies = table[table["kind"] == "policy"]
    assert set(policies["method"]) == {"pi_ref", *TRAIN["methods"], *TRAIN["full_methods"]}
    assert (policies["kl"] >= 0).all()
    bon = policies[policies["method"] == "best_of_n"]
    assert np.allclose(bon["kl"], np.log(bon["value"]) - (bon["value"] - 1) / bon["value"])
    reward_model = json.loads((study / "results/reward_model/summary.json").read_text())
    assert reward_model["val_pairs"] > 0 and 0 <= reward_model["val_accuracy"] <= 1
    assert (study / "results/plots_full/frontier.png").stat().st_size > 10_000
    optimal = table[table["kind"] == "optimal"]
    assert (optimal["method"] == "optimal").all() and len(optimal) == len(
        pd.read_csv(study / "results/optimal.csv")
    )
    assert optimal["ess"].notna().all() and table[table["kind"] != "optimal"]["ess"].isna().all()
    # every method with two swept values is a frontier, a later round its own one
    comparison = pd.read_csv(study / "results/comparison_full.csv")
    frontiers = set(zip(comparison["against"], comparison["against_round"]))
    assert {("dpo", 1), ("dpo", 2), ("best_of_n", 1)} <= frontiers
    assert not (
        (comparison["method"] == comparison["against"])
        & (comparison["round"] == comparison["against_round"])
    ).any()
    # iterated DPO (the micro config's iterative.methods): round 2 of each beta, on its own data
    rounds = table[table["round"] == 2]
    assert (
        sorted(rounds["method"].unique()) == ["dpo"] and len(rounds) == 4
    )  # 2 betas x policy/aggregate
    assert (policies[policies["method"] != "pi_ref"]["round"] >= 1).all()
    for beta in ("0.1", "1.0"):
        data = study / f"results/rounds/dpo/{beta}/seed0/round2"
        pairs = pd.read_parquet(data / "pairs.parquet")
        reference = pd.read_parquet(data / "reference/pairs.parquet")
        assert len(pairs) == len(reference) > 0
        samples = pd.read_parquet(data / "samples.parquet")
        first = pd.read_parquet(study / "results/samples.parquet")
        assert not samples["completion_ids"].map(tuple).equals(first["completion_ids"].map(tuple))


def test_every_other_method_trains_with_the_command_the_dag_plans(
    study, tmp_path, monkeypatch, caplog
):
    """The field's other methods (IPO, Unlikelihood, Preferred-FT, noisy-label DPO, TRL's loss
    types, f-DPO, SimPO, ORPO, RLOO, online DPO, ...) run the jobs of a method of the DAG's above:
    they differ in what their trainer does (their loss or objective, each checked on tensors in
    tests/test_losses.py and tests/test_trl_losses.py; which responses, which labels). Each
    trains here once, in this process, with the very command the DAG plans for it: as jobs, they
    would each spend their seconds starting Python and importing torch."""
    caplog.set_level(logging.INFO)
    in_dag = {*TRAIN["methods"], *TRAIN["full_methods"]}
    others = [m for m, r in METHODS.items() if r.trainer and m not in in_dag]
    # on rankings: tests/test_trainers.py (the micro policy's samples nearly all tie)
    rankings = {m for m, r in METHODS.items() if r.data in (RANKINGS, RANKED_PAIRS)}
    others = [m for m in others if m not in rankings]
    assert len(others) >= 20 and in_dag | set(others) | rankings == set(METHODS)
    ids = {m: policy_id(m, first_value(m), 0) for m in others}
    plan = snakemake(study, "-n", "-p", *(f"results/policies/{i}/model" for i in ids.values()))
    commands = [  # "Shell command: python -m pipeline.<trainer> <argv> > <log> 2>&1"
        re.search(r"python -m pipeline\.stages\.(\w+) (.*?) > ", line).groups()
        for line in plan.stdout.splitlines()
        if re.search(r"python -m pipeline\.stages\.(preference|online) ", line)
    ]
    params = [shlex.split(argv) for _, argv in commands]
    planned = [json.loads(argv[argv.index("--params") + 1])["method"] for argv in params]
    assert sorted(planned) == sorted(others)
    monkeypatch.chdir(study)  # the planned commands' inputs are the study's own files
    for module, command in commands:
        argv = shlex.split(command)
        for flag in ("--model", "--metrics", "--checkpoint"):
            at = argv.index(flag) + 1
            argv[at] = str(tmp_path / argv[at])
        importlib.import_module(f"pipeline.stages.{module}").main(argv)
    assert re.search(r"flip labels: \d+ of \d+ pairs flipped \(rate 0.4\)", caplog.text)
    for method, pid in ids.items():
        metrics = pd.read_csv(tmp_path / "results/policies" / pid / "metrics.csv")
        losses = metrics["loss"].dropna()  # pairwise: the first row is the reward before training
        assert len(losses) >= 1 and np.isfinite(losses).all(), method
        assert (tmp_path / "results/policies" / pid / "model/model.safetensors").exists(), method


def test_one_more_round_runs_only_that_round_from_the_last_one(study):
    snakemake(study, "--cores", CORES, "results/table_full.csv")
    rounds3 = {"iterative": {"methods": ["dpo"], "rounds": 3}}
    assert planned_jobs(study, config=rounds3, targets=["results/table_full.csv"]) == {
        "sample_round": 2,
        "score_round": 2,
        "pairs_round": 2,
        "reference_round": 2,
        "train_round": 2,
        "evaluate": 2,
        "table": 1,
    }
    plan = snakemake(study, "-n", "-p", "results/table_full.csv", config=rounds3).stdout
    for beta in ("0.1", "1.0"):
        last = f"results/policies/dpo/{beta}/seed0/round2/model"
        assert re.search(
            rf"pipeline.stages.sample .* --policy {last} .*round3/samples.parquet", plan
        )
        assert re.search(
            rf"pipeline.stages.preference .* --policy {last} --model .*round3/model", plan
        )
        assert re.search(
            r"pipeline.stages.reference .*round3/pairs.parquet --policy results/sft/model", plan
        )


def test_a_ranked_method_iterates_on_its_rounds_rankings(study):
    """The micro study has no strict ranking to train on, so only the plan is checked."""
    ranked = {
        "train": {"full_methods": ["plackett_luce"]},
        "iterative": {"methods": ["plackett_luce"], "rounds": 2},
    }
    plan = snakemake(study, "-n", "-p", "results/table_full.csv", config=ranked).stdout
    data = "results/rounds/plackett_luce/0.1/seed0/round2"
    assert re.search(
        rf"pipeline.stages.reference .* --pairs {data}/rankings.parquet --policy "
        rf"results/sft/model --out {data}/reference/rankings.parquet",
        plan,
    )
    assert re.search(
        rf"pipeline.stages.preference .* --pairs {data}/rankings.parquet --reference "
        rf"'{data}/reference/rankings.parquet' --policy "
        r"results/policies/plackett_luce/0.1/seed0/model ",
        plan,
    )
