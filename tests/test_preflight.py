"""`snakemake preflight`: every job of the study timed by kind and projected, and a batch that
does not fit reported with the key that sets it."""

import time
from types import SimpleNamespace as NS

import pandas as pd
import pytest
import torch
from runner import CORES, planned_jobs, snakemake

from pipeline.rewards import Reward
from pipeline.stages import preflight

TORCH_RULES = {
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


@pytest.fixture(scope="module")
def micro_preflight(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("preflight")
    # DPO and PPO, one trainer of each family (Cringe would be a third kind measured, like DPO)
    config = {"train": {"methods": ["dpo", "ppo"]}, "iterative": {"methods": ["dpo"]}}
    planned = planned_jobs(workdir, config=config)  # the default target's jobs, before any runs
    out = snakemake(workdir, "--cores", CORES, "preflight", config=config)
    return workdir, planned, out.stdout + out.stderr


@pytest.mark.slow
def test_every_job_of_the_study_is_projected_from_a_measured_kind(micro_preflight):
    workdir, planned, output = micro_preflight
    table = pd.read_csv(workdir / "results/preflight.csv")
    projected = table.groupby("rule")["jobs"].sum().to_dict()
    assert projected == {rule: n for rule, n in planned.items() if rule != "all"}
    torch_rows = table[table["rule"].isin(TORCH_RULES)]
    assert (torch_rows["seconds_per_unit"] > 0).all() and (torch_rows["seconds_start"] > 0).all()
    assert (torch_rows["peak_memory_mb"] > 100).all() and table["fits"].all()
    assert list(table.loc[table["rule"] == "train_pairwise", "method"]) == ["dpo"]
    total = preflight.study_seconds(table, int(table["cores"].iloc[0]))
    assert "the study" in output and preflight.duration(total) in output
    assert (table["seconds_total"] == table["jobs"] * table["seconds_per_job"]).all()


class Queue(list):
    put = list.append


@pytest.fixture
def score_inputs(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    pd.DataFrame({"text": ["A fine film, I loved it."] * 8}).to_parquet(tmp_path / "sft.parquet")

    def inputs(memory_mb):
        params = NS(
            reward=Reward(
                backend="vader", model=None, positive_label="", batch_size=4, max_length=64
            ),
            prompts=NS(max_tokens=8),
            extensions=[],
            sample=NS(max_new_tokens=8),
            preflight=preflight.Preflight(steps=1, memory_mb=memory_mb),
            # the measured kinds run in this process: leave its threads as they are
            threads=preflight.Threads(
                **dict.fromkeys(["cores", "train", "evaluate"], torch.get_num_threads())
            ),
        )
        return preflight.Inputs(params, str(tmp_path / "sft.parquet"), str(tmp_path / "tokenizer"))

    return inputs


def test_a_job_whose_peak_memory_exceeds_the_limit_does_not_fit(score_inputs):
    queue = Queue()
    preflight.child("score", score_inputs(memory_mb=1), time.time(), queue)
    [result] = queue
    assert not result["fits"] and "preflight.memory_mb" in result["error"]
    queue = Queue()
    preflight.child("score", score_inputs(memory_mb=None), time.time(), queue)
    assert queue[0]["fits"] and queue[0]["text"] > 0


def test_an_out_of_memory_error_is_reported_and_any_other_error_raised(score_inputs, monkeypatch):
    def oom(kind, inputs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(preflight, "measure", oom)
    queue = Queue()
    preflight.child("sft", score_inputs(None), time.time(), queue)
    assert not queue[0]["fits"] and queue[0]["error"].startswith("CUDA out of memory")

    def bug(kind, inputs):
        raise KeyError("a bug is not a batch that does not fit")

    monkeypatch.setattr(preflight, "measure", bug)
    with pytest.raises(KeyError):
        preflight.child("sft", score_inputs(None), time.time(), Queue())


def test_a_batch_that_does_not_fit_names_the_key_that_sets_it():
    ok = {"startup": 1.0, "load": 1.0, "peak_mb": 10.0, "fits": True, "error": ""}
    measured = {
        "sft": ok | {"step": 0.1, "heldout_review": 0.01},
        "sample": ok | {"sample_batch": 1.0, "eval_batch": 1.0},
        "score": ok | {"text": 0.001},
        "reference": ok | {"batch": 0.5},
        "train:ipo": ok
        | {"step": 0.2, "monitor_batch": 1.0, "fits": False, "error": "out of memory"},
        "train:ppo": ok | {"iteration": 3.0, "fits": False, "error": "out of memory"},
        "kl": ok
        | {"batch": 0.5, "reverse_batch": 0.4, "sample_batch": 1.0, "fits": False, "error": "oom"},
    }
    q = NS(
        sft=NS(holdout=10, batch_size=8, epochs=1),
        sample=NS(batch_size=64, n_per_prompt=4),
        reference=NS(batch_size=64),
        evaluate=NS(batch_size=32),
        best_of_n=NS(n=[4, 16]),
        monitor=preflight.Monitor(reward_prompts=16, reward_every=5),
        trainers={"ipo": NS(batch_size=8, epochs=1), "ppo": NS(iterations=10)},
        threads=preflight.Threads(cores=2, train=1, evaluate=2),
        counts=preflight.Counts(
            samples=400,
            train_prompts=100,
            eval_prompts=20,
            eval_samples=40,
            jobs={"ipo": 2, "ppo": 1},
            policies=4,
            best_of_n_jobs=1,
            cpu_jobs=dict.fromkeys(["data", "tokenizer", "prompts", "pairs", "table"], 1),
        ),
    )
    table = preflight.projection(q, measured, 0.5, sft_reviews=200).set_index(["rule", "method"])
    assert table.loc[("train_pairwise", "ipo"), "change"].startswith("dpo.micro_batch_size")
    assert table.loc[("train_ppo", "ppo"), "change"].startswith("ppo.minibatch_size")
    assert table.loc[("evaluate", ""), "change"] == "evaluate.batch_size"
    assert table.loc[("sft", ""), "change"] == ""
    # 600 pairs of 100 prompts in batches of 8: 75 steps; the reward checked at 0, every 5, the end
    ipo = table.loc[("train_pairwise", "ipo")]
    assert ipo["units_per_job"] == 75
    assert ipo["seconds_per_job"] == pytest.approx(2.0 + 75 * 0.2 + 16 * (1.0 + 16 * 0.001))
    # a trainer of one thread shares the 2 cores with another job; the evaluations hold both
    assert ipo["threads"] == 1 and table.loc[("evaluate", ""), "threads"] == 2
    alone = table["threads"] == 2
    assert preflight.study_seconds(table, cores=2) == pytest.approx(
        table.loc[alone, "seconds_total"].sum() + table.loc[~alone, "seconds_total"].sum() / 2
    )
