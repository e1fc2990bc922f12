"""Tiny models, tokenizers and data made on the fly: the Hugging Face hub is unreachable here."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REVIEWS = [
    "This movie was wonderful, the acting was great and I loved the story.<br /><br />A gem.",
    "Terrible film. Boring plot, awful dialogue, and the worst ending I have seen.",
    "An average movie with some good moments and some bad ones.",
    "I loved it! Beautiful music, brilliant cast, a great time at the cinema.",
    "Awful. I hated every minute and walked out before the end of this mess.",
    "The director tried hard but the script was weak and the pacing was slow.",
    "A masterpiece of modern cinema; funny, moving and smart from start to finish.",
    "Not worth your time. Poor effects, bad acting, and a story that makes no sense.",
] * 4


VADER = {
    "backend": "vader",
    "model": None,
    "positive_label": "POSITIVE",
    "batch_size": 64,
    "max_length": 64,
}
# what every trainer's rule adds from the train section: no live tracking
TRACKING = {"tracking": "none", "tracking_dir": "results/tracking"}
# what every trainer's rule adds: the policy's LoRA setting (none: full fine-tuning) and no points
# along the run
RUN = {"lora": None, "trajectory": []}
# the SFT stage's config for a tiny scratch policy; tests add epochs, batch_size, checkpoint_every
SFT_PARAMS = {
    "init": "scratch",
    "vocab_size": 300,
    "n_layer": 1,
    "n_embd": 32,
    "n_head": 2,
    "n_positions": 32,
    "max_length": 24,
    "lr": 3e-3,
    "weight_decay": 0.0,
    "warmup_steps": 3,
    "holdout": 8,
    "seed": 0,
    "micro_batch_size": None,
    "gradient_checkpointing": False,
    "compile": False,
    "allow_worse": False,
    "max_grad_norm": 1.0,
    "lora": None,
} | TRACKING
# the pairwise trainer's config without the method: tests add it and its own settings (beta, ...)
PAIRWISE_PARAMS = (
    {
        "optimizer": "adamw",
        "lr": 1e-2,
        "batch_size": 4,
        "epochs": 15,
        "warmup_steps": 1,
        "max_grad_norm": 10.0,
        "seed": 0,
        "micro_batch_size": None,
        "gradient_checkpointing": False,
        "compile": False,
        "reward_prompts": 2,
        "reward_every": 1000,
        "batch_order": "prompt",
        "max_new_tokens": 2,
        "checkpoint_every": 0,
        "reward": VADER,
        "extensions": [],
    }
    | TRACKING
    | RUN
)
# the reward model stage's config
REWARD_MODEL_PARAMS = {
    "lr": 3e-3,
    "batch_size": 16,
    "epochs": 5,
    "warmup_steps": 2,
    "max_grad_norm": 1.0,
    "optimizer": "adamw",
    "holdout_fraction": 0.25,
    "seed": 0,
    "batch_order": "pair",
    "checkpoint_every": 0,
} | TRACKING
# the PPO stage's config; tests add iterations and checkpoint_every
PPO_PARAMS = (
    {
        "method": "ppo",
        "target_kl": 6.0,
        "adaptive_kl": True,
        "init_kl_coef": 0.05,
        "horizon": 64,
        "rollout_size": 8,
        "minibatch_size": 4,
        "ppo_epochs": 2,
        "optimizer": "adamw",
        "lr": 1e-3,
        "warmup_steps": 2,
        "cliprange": 0.2,
        "cliprange_value": 0.2,
        "vf_coef": 0.1,
        "gamma": 1.0,
        "lam": 0.95,
        "max_grad_norm": 1.0,
        "gradient_checkpointing": False,
        "compile": False,
        "seed": 0,
        "max_new_tokens": 4,
        "sample_batch_size": 256,
        "reward": VADER,
        "extensions": [],
    }
    | TRACKING
    | RUN
)


# the online trainer's config (GRPO): the ppo section's keys but the KL target, and its own
ONLINE_PARAMS = {k: v for k, v in PPO_PARAMS.items() if k != "target_kl"} | {
    "method": "grpo",
    "beta": 0.04,
    "n_per_prompt": 2,
}


def pytest_collection_modifyitems(items):
    """The SLURM tests last: once SLURM is installed, every snakemake start runs the slurm
    plugin's `scontrol show config` probe, which waits 10 s when no controller is up."""
    items.sort(key=lambda item: item.path.name == "test_slurm.py")


@pytest.fixture(scope="session")
def reviews() -> pd.DataFrame:
    return pd.DataFrame({"text": REVIEWS, "label": [1, 0, 0, 1, 0, 0, 1, 0] * 4})


@pytest.fixture(scope="session")
def tokenizer():
    from pipeline.stages.tokenizer import train_bpe

    return train_bpe(REVIEWS, vocab_size=300, model_max_length=64)


@pytest.fixture(scope="session")
def policy_dir(tmp_path_factory, tokenizer):
    """A tiny GPT-2 saved as a Hugging Face folder (safetensors), standing in for gpt2-large."""
    from pipeline.models import build_gpt2

    torch.manual_seed(0)
    model = build_gpt2(tokenizer, n_layer=2, n_embd=32, n_head=2, n_positions=64).eval()
    path = tmp_path_factory.mktemp("policy")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def policy(policy_dir):
    from pipeline.models import load_causal_lm

    return load_causal_lm(str(policy_dir), "policy").eval()


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory, tokenizer):
    """A tiny sequence classifier standing in for siebert; label 1 is named POSITIVE."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=1,
        n_head=2,
        num_labels=2,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2ForSequenceClassification(config)
    path = tmp_path_factory.mktemp("classifier")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def hub_inputs(tmp_path_factory) -> dict:
    """The paper preset's inputs as the hub serves them, written once: the `stanfordnlp/imdb`
    dataset folder, a policy of each family in hub_formats.POLICIES (`gpt2` the paper's) and
    every classifier format in hub_formats.CLASSIFIERS (name -> (folder, reward.positive_label))."""
    import hub_formats

    root = tmp_path_factory.mktemp("hub")
    policies = {name: write(root / name) for name, write in hub_formats.POLICIES.items()}
    return {
        "imdb": hub_formats.write_imdb(root / "imdb"),
        "gpt2": policies["gpt2"],
        "policies": policies,
        "classifiers": {
            name: (hub_formats.write_classifier(root / name, family, labels), positive)
            for name, (family, labels, positive) in hub_formats.CLASSIFIERS.items()
        },
    }


def fake_evaluation(folder, sentiment, kl, seed=0, n_prompts=10):
    """A policy's evaluation files, as the evaluate stage writes them: 2 samples per prompt;
    prompt p's reward is offset by a prompt effect shared by every policy (prompts differ in
    difficulty)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    prompt = np.repeat(np.arange(n_prompts), 2)
    effect = np.random.default_rng(99).normal(0, 0.1, n_prompts)[prompt]
    n = len(prompt)
    pd.DataFrame(
        {
            "prompt_id": prompt,
            "sample_id": np.tile([0, 1], n_prompts),
            "score": sentiment + effect + rng.normal(0, 0.02, n),
            "kl": np.abs(rng.normal(kl, 0.2, n)) * (kl > 0),
            "kl_k1": rng.normal(kl, 1, n),
            "length": np.full(n, 8),
        }
    ).to_parquet(folder / "samples.parquet")
    pd.DataFrame({"kl_reverse": np.abs(rng.normal(kl, 0.1, n)) * (kl > 0)}).to_parquet(
        folder / "reverse_kl.parquet"
    )
    (folder / "summary.json").write_text(json.dumps({"distinct_2": 0.8}))


def shared_pairs(n_prompts: int) -> pd.DataFrame:
    """Each prompt's 4 samples in 4 pairs (the pairs stage makes 6), so pairs share responses."""

    def sample(i, j):
        return [20 + (i + j) % 5, 21 + j, 22][: 2 + j % 2]

    return pd.DataFrame(
        [
            {
                "prompt_id": i,
                "prompt_ids": [5 + i % 7, 6 + i % 2],
                "chosen_ids": sample(i, a),
                "rejected_ids": sample(i, b),
            }
            for i in range(n_prompts)
            for a, b in [(0, 1), (0, 2), (3, 1), (2, 3)]
        ]
    )


@pytest.fixture
def pair_files(tmp_path, policy):
    """64 preference pairs (16 prompts) and pi_ref's log-probs of them, as files in tmp_path."""
    from pipeline.logprobs import left_pad, response_logprobs

    df = shared_pairs(16)
    df.to_parquet(tmp_path / "pairs.parquet")
    with torch.no_grad():
        ref = {
            side: response_logprobs(
                policy, left_pad(df["prompt_ids"].tolist(), df[f"{side}_ids"].tolist(), 0)
            ).numpy()
            for side in ("chosen", "rejected")
        }
    pd.DataFrame({"ref_chosen": ref["chosen"], "ref_rejected": ref["rejected"]}).to_parquet(
        tmp_path / "ref.parquet"
    )
    return tmp_path


@pytest.fixture
def sft_args(tmp_path, tokenizer):
    """The SFT stage's inputs written to tmp_path; returns (params, out) -> its CLI arguments."""
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    pd.DataFrame({"text": REVIEWS * 4}).to_parquet(tmp_path / "sft.parquet")

    def args(params, out):
        return [
            "--params",
            json.dumps(params),
            "--sft",
            str(tmp_path / "sft.parquet"),
            "--tokenizer",
            str(tmp_path / "tokenizer"),
            "--model",
            str(out / "model"),
            "--metrics",
            str(out / "metrics.csv"),
            "--eval",
            str(out / "heldout.json"),
        ]

    return args


@pytest.fixture(scope="session")
def micro_study(tmp_path_factory):
    """The micro config run to results/table.csv by snakemake on this machine; shared by
    tests/test_workflow.py and, for the same bytes through SLURM, tests/test_slurm.py."""
    from runner import CORES, snakemake

    workdir = tmp_path_factory.mktemp("study")
    snakemake(workdir, "--cores", CORES)
    return workdir


def train_pairwise(params: dict, pair_files, policy_dir, out) -> None:
    """The pairwise trainer's stage, in this process, on `pair_files`' pairs from `policy_dir`:
    the policy, its metrics and the points along its run under `out`."""
    from pipeline.stages import preference

    preference.main(
        [
            "--params", json.dumps(params),
            "--pairs", str(pair_files / "pairs.parquet"),
            "--reference", str(pair_files / "ref.parquet"),
            "--policy", str(policy_dir),
            "--model", str(out / "model"),
            "--metrics", str(out / "metrics.csv"),
            "--trajectory", str(out / "at"),
        ]
    )  # fmt: skip
