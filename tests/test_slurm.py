"""The micro study through a real single-node SLURM cluster with the SLURM profile.

tests/slurm/cluster.sh installs SLURM from Debian, boots it with two fake GPUs, stops it by PID
and removes what it installed and wrote. Opt-in, since it installs system packages: runs with
PIPELINE_TEST_SLURM=1 (CI sets it), as root, with apt-get (or SLURM already installed).
"""

import subprocess

import pandas as pd
import pytest
from runner import REPO, planned_jobs, snakemake, why_no_slurm

pytestmark = pytest.mark.slow  # runs Snakemake or several processes: not in the inner loop

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
# Poll SLURM more often than the profile does, to keep the test short (6 s, tried, took longer).
FAST = ["--seconds-between-status-checks", "2", "--slurm-init-seconds-before-status-checks", "2"]
GPU_RULES = {
    "sft",
    "sample",
    "reference",
    "train_pairwise",
    "train_ppo",
    "evaluate",
    "evaluate_reference",
}
# DPO alone, at one beta, instead of the micro study's two betas, Cringe and PPO: six jobs fewer,
# each of which pays its start-up twice here (snakemake inside the job, then the stage). Beside
# them, in the same run, a Cringe policy whose cringe.k exceeds the vocabulary: its job fails, is
# tried once more (--retries 1, not the profile's 2: the slurm plugin waits longer before each
# status check that finds no job completed, so every further try costs more than the last) and
# fails again, while the rest of the study finishes (the profile's keep-going).
SMALLER = {"train": {"methods": ["dpo"]}, "dpo": {"beta": [0.1]}, "cringe": {"k": 10_000}}
FAILING = "results/policies/cringe/0.0/seed0/model"


@pytest.fixture(scope="module")
def cluster():
    if why_no_slurm():
        pytest.skip(why_no_slurm())
    subprocess.run(["bash", str(CLUSTER), "install"], check=True)
    try:
        subprocess.run(["bash", str(CLUSTER), "start"], check=True)
        yield
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop"], check=False)
        subprocess.run(["bash", str(CLUSTER), "uninstall"], check=False)


def slurm_jobs(workdir) -> list[dict]:
    """The jobs SLURM ran from `workdir` (the controller keeps finished jobs for MinJobAge)."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("WorkDir") == str(workdir):
            jobs.append(fields)
    return jobs


@pytest.fixture(scope="module")
def study(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm")
    plan = planned_jobs(workdir, config=SMALLER, targets=["results/table.csv"])
    proc = snakemake(
        workdir,
        "--profile",
        str(PROFILE),
        *FAST,
        "--retries",
        "1",
        "results/table.csv",
        FAILING,
        config=SMALLER,
        check=False,
    )
    return workdir, plan, proc


def failing(job: dict) -> bool:
    return "train_pairwise_wildcards_cringe" in job["Comment"]


def test_every_job_went_through_sbatch(study):
    workdir, plan, _ = study
    assert (workdir / "results/table.csv").exists()
    jobs = [j for j in slurm_jobs(workdir) if not failing(j)]
    assert len(jobs) == sum(plan.values())
    assert all(j["JobState"] == "COMPLETED" for j in jobs)


def test_slurm_gives_the_local_runs_results_to_the_byte(study, micro_study):
    """The same seeds through SLURM jobs as in tests/test_workflow.py's local run: the same pairs
    file, and the same table rows for the policies both have (this study trains DPO alone)."""
    workdir, _, _ = study
    for name in ["results/pairs.parquet", "results/data/sft.parquet"]:
        assert (workdir / name).read_bytes() == (micro_study / name).read_bytes(), name
    key = ["kind", "method", "value", "seed"]
    here = pd.read_csv(workdir / "results/table.csv", dtype=str).set_index(key)
    local = pd.read_csv(micro_study / "results/table.csv", dtype=str).set_index(key)
    # the local study has points along its Cringe and PPO runs, hence its `at` column; DPO has
    # none, so its rows there are its final policy's (at 1; pi_ref's blank)
    local = local.loc[here.index]
    assert "at" not in here and set(local["at"].dropna()) == {"1"}
    assert len(here) == 3 and here.equals(local[here.columns])


def test_gpu_rules_ask_for_a_gpu_and_cpu_rules_do_not(study):
    workdir, _, _ = study
    for job in slurm_jobs(workdir):
        rule = job["Comment"].removeprefix("rule_").split("_wildcards")[0]
        asks_gpu = "gpu" in job.get("TresPerJob", "")
        assert asks_gpu == (rule in GPU_RULES), (rule, job.get("TresPerJob"))


def test_a_failing_job_is_retried_and_the_rest_is_kept(study):
    workdir, _, proc = study
    assert proc.returncode != 0
    cringe = [j["JobState"] for j in slurm_jobs(workdir) if failing(j)]
    assert cringe == ["FAILED", "FAILED"], "one try and one retry"
    assert not (workdir / FAILING).exists()
    assert (workdir / "results/policies/dpo/0.1/seed0/model").exists()
    log = (workdir / "results/logs/train_cringe_0.0_seed0.log").read_text()
    assert "cringe.k = 10000 exceeds the vocabulary size" in log
