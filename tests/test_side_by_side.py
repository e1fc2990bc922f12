"""The completions page: the same prompts across policies, pi_ref first, and each policy's
highest- and lowest-reward samples, from the evaluation samples as they are."""

import json
import re

import pandas as pd
import pytest

from pipeline.stages import side_by_side
from pipeline.stages.side_by_side import build, choose_prompts, markdown_cell, to_html, to_markdown

POLICIES = ["sft", "dpo/0.1/seed0", "ppo/3.0/seed0/round2"]


def eval_samples(offset: float, n_prompts: int = 6) -> pd.DataFrame:
    """Two samples per prompt; sample 1's reward is above sample 0's."""
    rows = [
        {
            "prompt_id": i,
            "sample_id": k,
            "completion": f"c{i}.{k} +{offset}",
            "score": offset + 0.01 * i + 0.1 * k,
            "kl": 10 * offset + k,
        }
        for i in range(n_prompts)
        for k in range(2)
    ]
    return pd.DataFrame(rows)


@pytest.fixture
def samples():
    return {pid: eval_samples(0.1 * j) for j, pid in enumerate(POLICIES)}


PROMPTS = pd.Series({i: f"prompt {i}" for i in range(6)})


def test_the_prompts_are_drawn_by_seed_from_those_every_policy_has(samples):
    samples["dpo/0.1/seed0"] = samples["dpo/0.1/seed0"].query("prompt_id < 5")
    draws = {tuple(choose_prompts(samples, 3, seed)) for seed in range(8)}
    assert all(len(d) == 3 and list(d) == sorted(d) and max(d) < 5 for d in draws)
    assert len(draws) > 1 and choose_prompts(samples, 3, 0) == choose_prompts(samples, 3, 0)
    with pytest.raises(ValueError, match="side_by_side.prompts = 6.*only 5 shared prompts"):
        choose_prompts(samples, 6, 0)


def test_each_prompt_block_holds_every_policys_first_sample_pi_ref_first(samples):
    _, _, [(_, blocks), _] = build(samples, PROMPTS, 2, 1, seed=0)
    assert len(blocks) == 2
    for block in blocks:
        pid = int(re.match(r"Prompt (\d+)", block.heading)[1])
        assert f'"prompt {pid}"' in block.heading
        assert [r[0] for r in block.rows] == [
            "pi_ref",
            "dpo beta=0.1 seed 0",
            "ppo target_kl=3 seed 0, round 2",
        ]
        for row, (policy, table) in zip(block.rows, samples.items()):
            first = table[(table.prompt_id == pid) & (table.sample_id == 0)].iloc[0]
            assert row[1:] == [f"{first.score:.3f}", f"{first.kl:.2f}", first.completion]


def test_each_policy_shows_its_highest_and_lowest_reward_samples(samples):
    _, _, [_, (_, blocks)] = build(samples, PROMPTS, 2, 2, seed=0)
    assert [b.heading for b in blocks][0] == "pi_ref" and len(blocks) == 3
    ref = blocks[0]
    # pi_ref's rewards 0.01 i + 0.1 k (mean 0.075): the best are prompt 5's and 4's sample 1,
    # the worst prompt 0's and 1's sample 0
    assert [r[0] for r in ref.rows] == ["highest"] * 2 + ["lowest"] * 2
    assert [r[3] for r in ref.rows] == ["prompt 5", "prompt 4", "prompt 0", "prompt 1"]
    assert [r[4] for r in ref.rows] == ["c5.1 +0.0", "c4.1 +0.0", "c0.0 +0.0", "c1.0 +0.0"]
    assert "mean reward 0.075" in ref.note and "12 samples of 6 prompts" in ref.note


def test_highest_and_lowest_do_not_repeat_a_sample_when_a_policy_has_few():
    few = {"sft": eval_samples(0.0, n_prompts=1)}  # two samples, three asked for each way
    _, _, [_, (_, [block])] = build(few, PROMPTS, 1, 3, seed=0)
    assert [(r[0], r[4]) for r in block.rows] == [
        ("highest", "c0.1 +0.0"),
        ("highest", "c0.0 +0.0"),
    ]


def test_markdown_keeps_each_completion_in_its_cell_and_html_escapes_it(samples):
    samples["sft"].loc[0, "completion"] = "a | b\n<br /> *c*"
    samples["sft"].loc[1, "completion"] = "a | b\n<br /> *c*"  # whichever sample a block shows
    page = build(samples, PROMPTS, 6, 1, seed=0)
    md = to_markdown(*page)
    assert markdown_cell("a | b\n<br /> *c*") == r"a \| b \<br /\> \*c\*"
    assert markdown_cell("pi_ref _x_ [l](u) `c`") == r"pi_ref \_x\_ \[l\](u) \`c\`"
    assert md.startswith("# Completions side by side")
    header = "| policy | reward | KL | completion |"
    assert md.count(header) == 6
    for line in md.splitlines():
        if line.startswith("| pi_ref"):
            assert len(re.split(r"(?<!\\)\|", line)) == 6  # four cells
    html = to_html(*page)
    assert "a | b\n&lt;br /&gt; *c*" in html and "<br />" not in html


def test_the_stage_writes_both_pages(tmp_path, samples):
    for pid, table in samples.items():
        (tmp_path / "eval" / pid).mkdir(parents=True)
        table.to_parquet(tmp_path / "eval" / pid / "samples.parquet")
    pd.DataFrame({"prompt_id": PROMPTS.index, "prompt": PROMPTS.values}).to_parquet(
        tmp_path / "prompts.parquet"
    )
    args = [
        "--prompts",
        str(tmp_path / "prompts.parquet"),
        "--samples",
        *(str(tmp_path / "eval" / pid / "samples.parquet") for pid in POLICIES),
        "--markdown",
        str(tmp_path / "samples.md"),
        "--html",
        str(tmp_path / "samples.html"),
    ]
    params = {"policies": POLICIES, "prompts": 3, "extremes": 1, "seed": 0, "extensions": []}
    side_by_side.main(["--params", json.dumps(params)] + args)
    md = (tmp_path / "samples.md").read_text()
    assert md.count("### Prompt ") == 3 and md.count("| highest |") == 3
    assert (tmp_path / "samples.html").read_text().count("<h3>") == 3 + 3
    bad = params | {"policies": POLICIES[1:]}
    with pytest.raises(ValueError, match="must start with pi_ref"):
        side_by_side.main(["--params", json.dumps(bad)] + args)
    samples["sft"].assign(prompt_id=samples["sft"]["prompt_id"] + 10).to_parquet(
        tmp_path / "eval/sft/samples.parquet"
    )
    with pytest.raises(ValueError, match=r"prompt id\(s\) \[10, 11, 12, 13, 14\]"):
        side_by_side.main(["--params", json.dumps(params)] + args)
