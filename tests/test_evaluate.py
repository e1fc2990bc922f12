"""The evaluation's measures: exact KL, its estimators, whose samples, and the table."""

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fake_evaluation
from safetensors.torch import save_file

from pipeline.bootstrap import interval, replicates
from pipeline.cli import CPU_PRECISION
from pipeline.logprobs import forward_logprobs, left_pad
from pipeline.measures import (
    distinct_2,
    draw,
    final_states,
    kl_measures,
    select_prompts,
    token_kl,
)
from pipeline.models import autocast, build_gpt2, load_causal_lm
from pipeline.safe_loading import load_tokenizer
from pipeline.stages import evaluate
from pipeline.stages.table import COLUMNS, build_table


def perturbed(policy, scale, seed):
    other = copy.deepcopy(policy)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for w in other.parameters():
            w += scale * torch.randn(w.shape, generator=gen)
    return other.eval()


@pytest.mark.parametrize("same_module", [True, False])
def test_kl_of_pi_ref_against_itself_is_exactly_zero(policy, same_module):
    """Passed once (pi_ref's own evaluation) or as a second copy of the same weights, which runs
    the whole computation."""
    prompts, completions = [[5, 6], [7]], [[8, 9, 10], [11, 12]]
    ref = policy if same_module else copy.deepcopy(policy)
    out = kl_measures(policy, ref, prompts, completions, pad_id=0, batch_size=2)
    assert (out["kl"] == 0).all() and (out["kl_k1"] == 0).all()


def test_exact_kl_is_non_negative_for_random_models(tokenizer):
    torch.manual_seed(1)
    p = build_gpt2(tokenizer, 1, 16, 2, 32).eval()
    q = build_gpt2(tokenizer, 1, 16, 2, 32).eval()
    batch = left_pad([[1, 2], [3]], [[4, 5, 6], [7, 8]], pad_id=0)
    with torch.no_grad():
        per_token = token_kl(
            forward_logprobs(p, batch), forward_logprobs(q, batch), batch.response_mask
        )
    assert (per_token >= 0).all() and (per_token[batch.response_mask] > 0).all()
    assert (per_token[~batch.response_mask] == 0).all()


@pytest.mark.parametrize("cpu_precision", ["fp32", "bf16"])
def test_exact_kl_agrees_with_the_monte_carlo_log_ratio(
    policy, tokenizer, cpu_precision, monkeypatch
):
    """In bf16 too: the samples, the exact KL and k1 all come from the bf16 policy."""
    monkeypatch.setenv(CPU_PRECISION, cpu_precision)
    q = perturbed(policy, 0.05, seed=0)
    prompts = pd.DataFrame({"prompt_id": range(8), "prompt_ids": [[5 + i, 6] for i in range(8)]})
    samples = draw(policy, tokenizer, prompts, n=100, batch_size=400, max_new_tokens=6, seed=0)
    out = kl_measures(
        policy,
        q,
        samples["prompt_ids"].tolist(),
        samples["completion_ids"].tolist(),
        tokenizer.pad_token_id,
        batch_size=400,
    )
    diff = out["kl_k1"] - out["kl"]
    se = diff.std(ddof=1) / math.sqrt(len(diff))
    assert out["kl"].mean() > 0.05
    assert abs(diff.mean()) < 4 * se, (out["kl"].mean(), out["kl_k1"].mean(), se)


EVALUATE = {
    "n_prompts": 2,
    "samples_per_prompt": 3,
    "batch_size": 4,
    "seed": 0,
    "max_new_tokens": 5,
    "reward": {
        "backend": "vader",
        "model": None,
        "positive_label": "POSITIVE",
        "batch_size": 8,
        "max_length": 64,
    },
}


def run_evaluate(folder, prompts, policy, reference, *extra) -> dict:
    """The evaluate stage; its outputs, in `folder`, by name."""
    folder.mkdir(exist_ok=True)
    out = {k: folder / f"{k}.out" for k in ("samples", "reverse_kl", "summary")}
    args = ["--params", json.dumps(EVALUATE), "--prompts", str(prompts)]
    args += ["--policy", str(policy), "--reference", str(reference), *map(str, extra)]
    evaluate.main(args + [f"--{k.replace('_', '-')}={v}" for k, v in out.items()])
    return out


def test_the_reverse_kl_reads_pi_refs_final_states_as_its_own_pass_would_give_it(
    policy_dir, tmp_path
):
    """pi_ref's evaluation writes its states once; a policy's evaluation that reads them has the
    reverse KL of one that runs pi_ref again. States of other samples are refused, named."""
    prompts = tmp_path / "prompts.parquet"
    pd.DataFrame({"prompt_id": [0, 1], "prompt_ids": [[5, 6], [7, 8]]}).to_parquet(prompts)
    states = tmp_path / "states.safetensors"
    ref = run_evaluate(tmp_path / "ref", prompts, policy_dir, policy_dir, "--states", states)
    other = perturbed(load_causal_lm(str(policy_dir), "policy"), 0.05, seed=3)
    other.save_pretrained(tmp_path / "other")
    load_tokenizer(str(policy_dir), "policy").save_pretrained(tmp_path / "other")
    policy = [prompts, tmp_path / "other", policy_dir, "--ref-samples", ref["samples"]]
    reverse = {
        name: pd.read_parquet(run_evaluate(tmp_path / name, *policy, *extra)["reverse_kl"])
        for name, extra in {"whole": [], "states": ["--ref-states", states]}.items()
    }
    assert (reverse["whole"]["kl_reverse"] > 0).all()
    np.testing.assert_allclose(
        reverse["states"]["kl_reverse"], reverse["whole"]["kl_reverse"], rtol=1e-4, atol=1e-6
    )
    save_file({"states": torch.zeros(2, other.config.n_embd)}, str(states))
    with pytest.raises(ValueError, match="states.safetensors: 2 states"):
        run_evaluate(tmp_path / "bad", *policy, "--ref-states", states)


def test_evaluation_samples_come_from_the_evaluated_policy(policy_dir, tmp_path, tokenizer):
    """A policy that almost always says token 42: pi_ref's samples would not."""
    skewed = load_causal_lm(str(policy_dir), "policy")
    with torch.no_grad():  # final hidden state = u for every input, and u is token 42's embedding
        u = torch.full((skewed.config.n_embd,), 3.0)
        skewed.transformer.ln_f.weight.zero_()
        skewed.transformer.ln_f.bias.copy_(u)
        skewed.transformer.wte.weight[42] = u
    folder = tmp_path / "skewed"
    skewed.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    prompts = pd.DataFrame({"prompt_id": [0, 1], "prompt_ids": [[5, 6], [7, 8]]})
    prompts.to_parquet(tmp_path / "prompts.parquet")
    ref_samples = tmp_path / "ref_samples.parquet"
    pd.DataFrame(
        {"prompt_id": [0], "sample_id": [0], "prompt_ids": [[5, 6]], "completion_ids": [[9, 10]]}
    ).to_parquet(ref_samples)
    out = run_evaluate(
        tmp_path / "eval",
        tmp_path / "prompts.parquet",
        folder,
        policy_dir,
        "--ref-samples",
        ref_samples,
    )
    samples = pd.read_parquet(out["samples"])
    tokens = np.concatenate(samples["completion_ids"].to_numpy())
    assert (tokens == 42).mean() > 0.99
    summary = json.loads(out["summary"].read_text())
    assert summary["kl"] > 5 and summary["n"] == 6


@pytest.mark.parametrize("cpu_precision", ["fp32", "bf16"])
def test_sampling_and_logprobs_use_the_same_distribution(policy, cpu_precision, monkeypatch):
    """No hidden top-k: single-token sample frequencies match exp(log-prob), the tail included,
    in bf16 as in fp32 (both sides under the same autocast)."""
    monkeypatch.setenv(CPU_PRECISION, cpu_precision)
    n = 6000
    gen = torch.Generator().manual_seed(0)
    from pipeline.sampling import sample

    tokens = torch.tensor(
        [c[0] for c in sample(policy, [[5, 6]] * n, 1, eos_id=-1, pad_id=0, generator=gen)]
    )
    with torch.no_grad(), autocast(torch.device("cpu")):
        probs = policy(torch.tensor([[5, 6]])).logits[0, -1].float().softmax(-1)
    top = probs.argsort(descending=True)
    tail_mass = probs[top[50:]].sum().item()
    tail_freq = torch.isin(tokens, top[50:]).float().mean().item()
    assert tail_mass > 0.05
    assert abs(tail_freq - tail_mass) < 4 * math.sqrt(tail_mass * (1 - tail_mass) / n)
    for tok in top[:5]:
        p = probs[tok].item()
        assert abs((tokens == tok).float().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_a_model_whose_logits_are_not_its_output_layers_keeps_its_whole_pass():
    """Gemma 2 soft-caps its logits after the output layer: its final states cannot stand in for
    it, and the reverse KL then runs it over pi_ref's samples as before."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        pad_token_id=0,
        final_logit_softcapping=2.0,
    )
    torch.manual_seed(0)
    capped = Gemma2ForCausalLM(config).eval()
    assert final_states(capped, [[3, 4]], [[5, 6, 7]], 0, 2) is None
    config.final_logit_softcapping = None
    assert final_states(Gemma2ForCausalLM(config).eval(), [[3, 4]], [[5, 6, 7]], 0, 2).shape == (
        3,
        16,
    )


def test_distinct_2():
    assert distinct_2([[1, 2, 1, 2], [3]]) == pytest.approx(2 / 3)


def test_evaluation_prompt_set_bounds(tmp_path):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"prompt_id": [0, 1], "prompt_ids": [[1, 2], [3, 4]]}).to_parquet(path)
    with pytest.raises(ValueError, match="at least one prompt"):
        select_prompts(path, 0)
    with pytest.raises(ValueError, match=r"evaluate.n_prompts = 3 but .* holds only 2 prompts"):
        select_prompts(path, 3)


def test_bootstrap_interval_brackets_the_mean():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"prompt_id": np.repeat(np.arange(100), 2), "score": rng.random(200)})
    lo, hi = interval(replicates([df], "score", 500, 0))
    assert lo < df["score"].mean() < hi and hi - lo < 0.2


def test_table_schema_and_rows(tmp_path):
    fake_evaluation(tmp_path / "sft", 0.6, 0.0)
    for seed in (0, 1):
        fake_evaluation(tmp_path / f"dpo/0.1/seed{seed}", 0.9, 5.0, seed)
    fake_evaluation(tmp_path / "dpo/0.1/seed0/round2", 0.95, 8.0)
    fake_evaluation(tmp_path / "ppo/6.0/seed0", 0.8, 6.0)
    policies = ["sft", "dpo/0.1/seed0", "dpo/0.1/seed1", "dpo/0.1/seed0/round2", "ppo/6.0/seed0"]
    table = build_table({pid: tmp_path / pid for pid in policies}, n_boot=200, seed=0)
    assert list(table.columns) == COLUMNS
    assert table["kind"].tolist() == ["policy"] * 5 + ["aggregate"] * 3
    ref = table[table["method"] == "pi_ref"].iloc[0]
    assert ref["kl"] == 0 and ref["kl_lo"] == 0 and ref["kl_hi"] == 0
    dpo = table[(table["kind"] == "aggregate") & (table["method"] == "dpo")]
    assert dpo["round"].tolist() == [1, 2]  # each round is its own row, seeds pooled within it
    agg = dpo.iloc[0]
    assert agg["n"] == 40 and agg["n_seeds"] == 2 and agg["param"] == "beta" and agg["value"] == 0.1
    assert dpo.iloc[1]["n_seeds"] == 1 and dpo.iloc[1]["kl"] > agg["kl"]
    assert (
        (table["sentiment_lo"] <= table["sentiment"])
        & (table["sentiment"] <= table["sentiment_hi"])
    ).all()
    assert (table["kl"] >= 0).all()
    # the one-seed rows say their interval covers the prompts only; two seeds: seeds too
    assert set(table[table["n_seeds"] == 1]["ci_over"]) == {"prompts"}
    assert agg["ci_over"] == "seeds+prompts"


@pytest.mark.parametrize(
    "pid, meta",
    [
        ("sft", None),
        ("dpo/0.1/seed0", ("dpo", 0.1, 0, 1)),
        ("cringe/0.0/seed3/round2", ("cringe", 0.0, 3, 2)),
        ("ipo/0.5/seed0/round12", ("ipo", 0.5, 0, 12)),
    ],
)
def test_policy_ids_round_trip(pid, meta):
    from pipeline.paths import parse_policy_id, policy_id

    parsed = parse_policy_id(pid)
    if meta is None:
        assert parsed["method"] == "pi_ref"
        return
    assert (parsed["method"], parsed["value"], parsed["seed"], parsed["round"]) == meta
    assert policy_id(meta[0], pid.split("/")[1], meta[2], meta[3]) == pid


@pytest.mark.parametrize(
    "pid",
    [
        "dpo/0.1",
        "spin/0.1/seed0",
        "dpo/0.1/s0",
        "dpo/0.1/seed0/round1",
        "dpo/0.1/seed0/round0",
        "dpo/0.1/seed0/r2",
        "dpo/0.1/seed0/round2/x",
    ],
)
def test_a_malformed_policy_id_is_refused(pid):
    from pipeline.paths import parse_policy_id

    with pytest.raises(ValueError, match="not a policy id"):
        parse_policy_id(pid)


def test_every_method_has_its_own_colour_and_legend_entry():
    from pipeline.methods import METHODS
    from pipeline.stages.plots import colour, legend

    names = ["pi_ref", *METHODS]
    assert len({colour(m) for m in names}) == len({legend(m) for m in names}) == len(names)


def test_best_of_n_takes_the_best_of_each_prompts_first_n_samples_and_reports_the_kl_bound():
    from pipeline.stages.best_of_n import best_of, kl_bound

    samples = pd.DataFrame(
        {
            "prompt_id": [0] * 4 + [1] * 4,
            "sample_id": [0, 1, 2, 3] * 2,
            "score": [0.1, 0.7, 0.9, 0.2, 0.5, 0.4, 0.3, 0.95],
            "length": 3,
        }
    )
    best2, best4 = best_of(samples, 2), best_of(samples, 4)
    assert best2["score"].tolist() == [0.7, 0.5] and best4["score"].tolist() == [0.9, 0.95]
    assert kl_bound(1) == 0.0 and best4["kl"].iloc[0] == pytest.approx(math.log(4) - 3 / 4)
    assert best4["kl_k1"].isna().all()


def test_a_report_stage_reads_only_the_files_its_rule_declared(tmp_path):
    from pipeline.evaluations import policy_folders

    files = [
        str(tmp_path / "eval" / pid / name)
        for pid in ("sft", "dpo/0.1/seed0")
        for name in ("samples.parquet", "reverse_kl.parquet", "summary.json")
    ]
    assert policy_folders(["sft", "dpo/0.1/seed0"], files) == {
        "sft": tmp_path / "eval/sft",
        "dpo/0.1/seed0": tmp_path / "eval/dpo/0.1/seed0",
    }
    with pytest.raises(ValueError, match="the files .* of dpo/0.1/seed0 are not among the inputs"):
        policy_folders(["sft", "dpo/0.1/seed0"], files[:5])
    with pytest.raises(ValueError, match="files of no policy given"):
        policy_folders(["sft"], files)
