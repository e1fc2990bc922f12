"""A method of one's own, added as a user would: a module outside the project with one pure loss
and one record, named in train.extensions, trained and evaluated through the micro DAG to
results/table_full.csv without editing a project file."""

import shutil
import sys

import pandas as pd
import pytest
import torch
from runner import CORES, snakemake

EXTENSION = '''
"""A margin hinge with a margin of one's own choosing: L = max(0, margin - beta D)."""

import torch

from pipeline.methods import PAIRS, Method, register, swept


def margin_hinge_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, margin):
    """L = max(0, margin - beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))])."""
    d = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return torch.relu(margin - beta * d)


register(Method("margin_hinge", "margin hinge (beta)", "olive", "beta", PAIRS, "DPO: margin losses",
                loss=margin_hinge_loss, needs_reference=True, settings_from="dpo",
                section={"beta": swept([0.5]),
                         "margin": {"type": "number", "default": 2.0, "exclusiveMinimum": 0}}))
'''

# An online method of one's own, with a key of its own (not beta): REINFORCE with each sample's
# reward, scaled, against the mean of the other samples of its prompt.
ONLINE_EXTENSION = '''
"""REINFORCE with a leave-one-out baseline on rewards scaled by `scale`."""

from pipeline.losses import leave_one_out_advantages
from pipeline.methods import online, swept
from pipeline.steps import Objective


def targets(rollout, p, G):
    return {"advantages": leave_one_out_advantages(p.own["scale"] * rollout["scores"].float(), G)}


def loss(logps, rollout, rows, p, G):
    return -(rollout["advantages"][rows] * logps.sum(-1)).view(-1, G).mean(-1)


online("reinforce_loo", "REINFORCE, leave-one-out (scale)", "teal",
       Objective(targets, loss, settings=("scale",)), swept([2.0]), swept_key="scale")
'''


def test_the_extensions_loss_by_hand_and_its_record(tmp_path, monkeypatch):
    from pipeline import registry

    # the registry as it was is put back after the test
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    (tmp_path / "margin_hinge.py").write_text(EXTENSION)
    registry.load_extensions([str(tmp_path / "margin_hinge.py")])
    loss = sys.modules.pop("extension_margin_hinge").margin_hinge_loss
    t = torch.tensor  # D = 2: max(0, 2 - 0.5 * 2) = 1
    assert loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), 0.5, 2.0).item() == 1.0
    record = registry.METHODS["margin_hinge"]
    assert record.trainer == "preference" and record.reads == "pairs" and record.loss is loss


@pytest.mark.slow
def test_a_method_registered_outside_the_project_runs_through_the_dag(
    tmp_path_factory, micro_study
):
    workdir = tmp_path_factory.mktemp("extension")
    # pi_ref, the pairs, the main study; not a full table another test may have made, which,
    # copied without Snakemake's records of its params, would count as up to date
    shutil.copytree(
        micro_study / "results", workdir / "results", ignore=shutil.ignore_patterns("*_full*")
    )
    module, online = workdir / "margin_hinge.py", workdir / "reinforce_loo.py"
    module.write_text(EXTENSION)
    online.write_text(ONLINE_EXTENSION)
    config = {
        "train": {
            "extensions": [str(module), str(online)],
            "full_methods": ["margin_hinge", "reinforce_loo"],
        },
        "iterative": {"methods": []},
        "margin_hinge": {"margin": 3.0},
    }
    snakemake(workdir, "--cores", CORES, "results/table_full.csv", config=config)
    table = pd.read_csv(workdir / "results/table_full.csv")
    row = table[(table["kind"] == "policy") & (table["method"] == "margin_hinge")]
    assert len(row) == 1 and row["param"].item() == "beta" and row["value"].item() == 0.5
    assert (workdir / "results/policies/margin_hinge/0.5/seed0/model/model.safetensors").is_file()
    log = (workdir / "results/logs/train_margin_hinge_0.5_seed0.log").read_text()
    assert "margin_hinge: sample reward" in log
    # its run, with the point halfway along it that the micro config's ppo section asks for
    rows = table[(table["kind"] == "policy") & (table["method"] == "reinforce_loo")]
    assert rows["param"].tolist() == ["scale"] * 2 and rows["value"].tolist() == [2.0] * 2
    assert rows["at"].tolist() == [0.5, 1.0]
    log = (workdir / "results/logs/train_reinforce_loo_2.0_seed0.log").read_text()
    assert "reinforce_loo: reward" in log


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"train": {"full_methods": ["plackett_luce"]}, "sample": {"n_per_prompt": 2}},
            "plackett_luce trains on rankings of each prompt's samples, which need"
            " sample.n_per_prompt >= 3",
        ),
        (
            {"train": {"full_methods": ["grpo"]}, "sample": {"n_per_prompt": 3}},
            "grpo samples groups of sample.n_per_prompt (3) per prompt: at least 2, dividing"
            " ppo.rollout_size (8)",
        ),
        (
            {"train": {"extensions": ["no/such/module.py"]}},
            "train.extensions: 'no/such/module.py' does not exist",
        ),
    ],
)
def test_a_method_whose_data_the_config_cannot_give_is_refused_before_any_job(
    tmp_path, config, message
):
    proc = snakemake(tmp_path, "-n", config=config, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in out and "Traceback" not in out
