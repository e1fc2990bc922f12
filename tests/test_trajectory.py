"""Points along a run (`trajectory`): the policy saved at chosen fractions of a run's steps, each a
model folder of its own that the evaluation reads as any policy."""

import json

import pandas as pd
import pytest
import torch
from conftest import PAIRWISE_PARAMS, train_pairwise

from pipeline.logprobs import left_pad, response_logprobs
from pipeline.loop import Trajectory
from pipeline.models import load_causal_lm


@pytest.mark.parametrize(
    "fractions, total, message",
    [
        ([0.01], 20, r"dpo.trajectory = 0.01: a run of 20 steps has no step there"),
        ([0.99], 20, r"dpo.trajectory = 0.99: a run of 20 steps has no step there"),
        ([0.5, 0.52], 20, r"dpo.trajectory: 0.5 and 0.52 both fall on step 10 of 20"),
    ],
)
def test_a_point_that_falls_on_no_step_of_its_own_is_refused_naming_the_key(
    tmp_path, fractions, total, message
):
    with pytest.raises(ValueError, match=message):
        Trajectory(fractions, "dpo.trajectory", tmp_path / "at").plan(total, None, None)


def test_points_need_a_folder():
    with pytest.raises(ValueError, match=r"dpo.trajectory = \[0.5\]: the points need a folder"):
        Trajectory([0.5], "dpo.trajectory")


def test_a_run_saves_its_points_and_moves_through_them(pair_files, policy_dir, tmp_path):
    """DPO with points at a quarter and half of its 32 steps: each a plain model folder with the
    step it was saved at; the margin DPO widens (chosen over rejected log-probs) grows along the
    run, from pi_ref through the points to the final policy."""
    params = PAIRWISE_PARAMS | {"method": "dpo", "beta": 0.1, "epochs": 2, "lr": 3e-3}
    params |= {"trajectory": [0.25, 0.5]}
    out = tmp_path / "run"
    train_pairwise(params, pair_files, policy_dir, out)
    assert sorted(p.name for p in (out / "at").iterdir()) == ["0.25", "0.5"]
    assert not list(tmp_path.glob(".*staging*")) and not list(out.glob(".*"))
    steps = [json.loads((out / "at" / f / "point.json").read_text()) for f in ("0.25", "0.5")]
    assert steps == [
        {"fraction": 0.25, "step": 8, "steps": 32},
        {"fraction": 0.5, "step": 16, "steps": 32},
    ]
    pairs = pd.read_parquet(pair_files / "pairs.parquet")
    prompts = [list(x) for x in pairs["prompt_ids"]]
    chosen, rejected = (
        left_pad(prompts, [list(x) for x in pairs[f"{s}_ids"]], 0) for s in ("chosen", "rejected")
    )
    margins = []
    for folder in [policy_dir, out / "at/0.25/model", out / "at/0.5/model", out / "model"]:
        model = load_causal_lm(str(folder), "policy").eval()
        with torch.no_grad():
            margin = response_logprobs(model, chosen) - response_logprobs(model, rejected)
        margins.append(margin.mean().item())
    assert margins == sorted(margins) and margins[0] < margins[-1], margins
