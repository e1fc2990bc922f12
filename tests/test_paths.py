"""One path template for a policy's artifacts (pipeline.paths.policy_path), built from the one
policy-id function: no rule or script writes a policy's path by hand."""

import re
from pathlib import Path

from pipeline.paths import job_log, policy_id, policy_path

REPO = Path(__file__).resolve().parent.parent


def test_no_rule_or_script_spells_a_policy_path_outside_the_template():
    sources = [REPO / "Snakefile", *(REPO / "workflow/rules").glob("*.smk")]
    sources += [p for p in (REPO / "pipeline").rglob("*.py") if p.name != "paths.py"]
    sources += list((REPO / "benchmarks").glob("*.py"))
    found = [
        f"{p.relative_to(REPO)}:{i}: {line.strip()}"
        for p in sources
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"seed\{|results/(policies|eval|rounds|checkpoints)/\{", line)
    ]
    assert found == []


def test_the_template_on_wildcards_gives_the_rules_patterns():
    run = policy_id("{method}", "{value}", "{seed}")
    later = policy_id("{method}", "{value}", "{seed}", "{round}")
    assert policy_path(run, "model") == "results/policies/{method}/{value}/seed{seed}/model"
    assert policy_path(later, "data") == "results/rounds/{method}/{value}/seed{seed}/round{round}"
    assert policy_path(run, "checkpoint") == "results/checkpoints/{method}_{value}_seed{seed}"
    assert (
        job_log("train", later) == "results/logs/train_{method}_{value}_seed{seed}_round{round}.log"
    )
    pool = policy_id("best_of_n", "pool", 0)
    assert policy_path(pool, "pool") == "results/eval/best_of_n/pool/seed0.parquet"
    assert job_log("best_of_n", pool) == "results/logs/best_of_n_pool_seed0.log"
    assert (
        policy_path(policy_id("dpo", 0.1, 0, at=0.5), "eval") == "results/eval/dpo/0.1/seed0/at/0.5"
    )
