# What the rules share, in reading order: helpers, the studies (which policies each table holds),
# the config each stage gets (every rule passes exactly its own slice as params), the trainers'
# wildcards, and the resources a cluster job asks for. The config is validated before this file
# is read (config.smk); the recipe digests are in recipes.smk.
import hashlib
import json
import os
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

from pipeline.methods import METHODS, NOTHING, REFERENCE
from pipeline.paths import (LATER_ROUND, job_log, policy_id, policy_id_pattern, policy_path, run_of,
                            split_policy_id)
from pipeline.sources import is_gguf


# --- helpers the rules use ------------------------------------------------------------------


def preference_data(method):
    """What a preference trainer learns from: the pairs, or the rankings (best-choice data)."""
    return METHODS[method].reads


def as_arg(section, keys=None):
    """A config section (or some of its keys) as one shell-quoted JSON argument for a stage."""
    chosen = section if keys is None else {k: section[k] for k in keys}
    return shlex.quote(json.dumps(chosen, sort_keys=True))


def digest(recipe):
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def all_cores():
    """Threads for the torch rules on the critical path: every core given to Snakemake, at most
    this machine's (--report and other runs that give none get 1; a cluster profile can
    override per rule with set-threads)."""
    try:
        return min(workflow.cores, os.cpu_count() or 1)
    except WorkflowError:
        return 1


def threads_of(kind):
    """Threads of the trainers or the evaluations (`resources.threads`): a number, at most every
    core given to Snakemake, or "all" of them."""
    wanted = config["resources"]["threads"][kind]
    return all_cores() if wanted == "all" else min(wanted, all_cores())


def methods_trained_by(trainer):
    """The methods whose jobs a trainer module runs ("preference", "ppo"), as a wildcard pattern."""
    return "|".join(sorted(m for m, r in METHODS.items() if r.trainer == trainer))


# The id of a training job's policy, in its wildcards: round 1's and a later round's.
RUN = policy_id("{method}", "{value}", "{seed}")
LATER = policy_id("{method}", "{value}", "{seed}", "{round}")


wildcard_constraints:
    value=r"[^/]+",
    seed=r"\d+",
    round=LATER_ROUND,


# results/table.csv and its plots hold train.methods; results/table_full.csv adds full_methods
# and the later rounds of the iterated methods.
STUDIES = {
    "table": config["train"]["methods"],
    "table_full": config["train"]["methods"]
    + [m for m in config["train"]["full_methods"] if m not in config["train"]["methods"]],
}
PLOTS = {"plots": "table", "plots_full": "table_full"}  # plot folder -> its table
COMPARISONS = {"comparison": "table", "comparison_full": "table_full"}  # comparison -> its table
# pi*'s samples: the Best-of-N pool of the first seed (pipeline.stages.optimal)
OPTIMAL_POOL = policy_path(policy_id("best_of_n", "pool", config["train"]["seeds"][0]), "pool")


def points_of(method):
    """The fractions of a run at which a method's policy is also saved and evaluated: its settings
    section's `trajectory` (none for what no run trains)."""
    if not METHODS[method].trainer:
        return []
    return config[METHODS[method].settings].get("trajectory", [])


def evaluated_policies(study):
    """pi_ref, then one policy per method, swept value, seed (Best-of-N included) and, in the
    full table, round; each run's points along it (`trajectory`) before its final policy."""
    iterated = config["iterative"]["methods"] if study == "table_full" else []
    return [REFERENCE] + [
        policy_id(method, value, seed, rnd, at)
        for method in STUDIES[study]
        for value in config[method][METHODS[method].swept]
        for seed in config["train"]["seeds"]
        for rnd in range(1, (config["iterative"]["rounds"] if method in iterated else 1) + 1)
        for at in [*points_of(method), None]
    ]


# pi_ref's final hidden states on its evaluation samples: pi_ref's side of every reverse KL
REFERENCE_STATES = policy_path(REFERENCE, "eval", "states.safetensors")


def evaluations(study):
    """The evaluation files of every policy of a study."""
    return expand(policy_path("{policy}", "eval", "{f}"), policy=evaluated_policies(study),
                  f=["samples.parquet", "reverse_kl.parquet", "summary.json"])


def is_trained(pid):
    """Whether a policy id names a trained policy: a run's final one or a point along it."""
    return pid != REFERENCE and METHODS[split_policy_id(pid).method].trainer is not None


def trained_policies(study):
    """The final policies of a study's training runs (each with its metrics.csv)."""
    return [pid for pid in evaluated_policies(study)
            if is_trained(pid) and split_policy_id(pid).at is None]


def policy_model(pid):
    """The model folder of a policy: pi_ref's, a run's final policy or a point along a run."""
    return "results/sft/model" if pid == REFERENCE else policy_path(pid, "model")


def policy_folder(wildcards):
    """What an evaluation reads the policy from, as its training job declares it (a point
    along a run lies inside its run's `at` folder)."""
    pid = wildcards.policy
    if pid == REFERENCE or split_policy_id(pid).at is None:
        return policy_model(pid)
    return policy_path(run_of(pid), "trajectory")


def download_config():
    """What the download target reads: where the data, the policy and the reward come from."""
    return {"data": config["data"], "init": config["policy"]["init"], "reward": config["reward"]}


# A GGUF policy.init is read once into a model folder (rule pretrained), which the tokenizer and
# SFT stages then load as they load any pretrained policy.
PRETRAINED = "results/pretrained/model"


def pretrained_input():
    return PRETRAINED if is_gguf(config["policy"]["init"]) else []


def policy_config():
    """The policy section as the stages load it: a GGUF init replaced by its model folder."""
    return config["policy"] | ({"init": PRETRAINED} if pretrained_input() else {})


# What a stage takes from other config sections besides its own, under the name its Settings
# record reads: the one place a setting is borrowed (the record's field names its source).
TRACKING = {"tracking": "train.tracking", "tracking_dir": "train.tracking_dir"}
EXTENSIONS = {"extensions": "train.extensions"}  # to parse the policy ids of methods of one's own
BORROWED = {
    "sft": TRACKING,
    "reward_model": {"batch_order": "train.batch_order", **TRACKING},
    "evaluate": {"reward": "reward", "max_new_tokens": "sample.max_new_tokens"},
    "best_of_n": {"n_prompts": "evaluate.n_prompts", "batch_size": "evaluate.batch_size",
                  "reward": "reward", "max_new_tokens": "sample.max_new_tokens"},
    "optimal": {"bootstrap": "table.bootstrap", "seed": "table.seed"},
    "comparison": EXTENSIONS,  # and the leaderboard
    "table": EXTENSIONS,
    "side_by_side": EXTENSIONS,
    "plots": {"min_ess": "optimal.min_ess", **EXTENSIONS},
    # every trainer, then what each kind adds: the reward monitor of the preference trainers;
    # PPO's and the online methods' rollouts, sampled as the sample stage does; the online
    # methods' groups of sample.n_per_prompt samples per prompt
    "trainer": {"reward": "reward", "max_new_tokens": "sample.max_new_tokens",
                "lora": "policy.lora", **EXTENSIONS, **TRACKING},
    "preference": {k: f"train.{k}" for k in ("reward_prompts", "reward_every", "batch_order")},
    "ppo": {"sample_batch_size": "sample.batch_size"},
    "online": {"sample_batch_size": "sample.batch_size", "n_per_prompt": "sample.n_per_prompt"},
}


def borrowed(stage):
    """The settings a stage borrows (`BORROWED`), with their values."""
    values = {}
    for key, source in BORROWED[stage].items():
        section, _, name = source.partition(".")
        values[key] = config[section][name] if name else config[section]
    return values


def sft_config():
    return policy_config() | config["sft"] | borrowed("sft")


def tokenizer_config():
    return {k: policy_config()[k] for k in ("init", "vocab_size", "n_positions")}


def sample_config(rnd=1):
    """The sample stage's config, with a seed of its own per round: round 1 draws with sample.seed."""
    return config["sample"] | {"seed": config["sample"]["seed"] + rnd - 1}


def reward_model_config():
    return config["reward_model"] | borrowed("reward_model")


def evaluate_config():
    return config["evaluate"] | borrowed("evaluate")


def best_of_n_config(seed):
    return config["best_of_n"] | borrowed("best_of_n") | {"seed": int(seed)}


def optimal_config():
    return config["optimal"] | borrowed("optimal")


def trainer_config(method, value, seed):
    """A trainer's config: its method section with the swept list replaced by this job's value,
    on top of the section it takes its optimiser settings from, and what its trainer borrows."""
    record = METHODS[method]
    values = {str(v): v for v in config[method][record.swept]}
    if value not in values:
        raise WorkflowError(f"{method}: {value} is not in {method}.{record.swept}")
    base = {}
    if record.settings_from:
        other = config[record.settings_from]
        base = {k: v for k, v in other.items() if k != METHODS[record.settings_from].swept}
    section = base | config[method] | {record.swept: values[value], "method": method,
                                       "seed": int(seed)}
    section |= borrowed("trainer") | borrowed(record.trainer)
    if record.learned_reward:  # trained on the learned reward; evaluated, like all, on the true one
        section["reward_model"] = REWARD_MODEL
    return section


def preflight_config():
    """Every setting the measured jobs use, and the study's counts of what they repeat over."""
    seeds = config["train"]["seeds"]
    trained = [m for m in config["train"]["methods"] if METHODS[m].trainer]
    # Best-of-N's evaluations come from rule best_of_n
    policies = [pid for pid in evaluated_policies("table") if pid == REFERENCE or is_trained(pid)]
    return {
        "sft": sft_config(), "prompts": config["prompts"], "sample": sample_config(),
        "reward": config["reward"], "reference": config["reference"],
        "monitor": {k: config["train"][k] for k in ("reward_prompts", "reward_every")},
        "evaluate": evaluate_config(),
        "best_of_n": best_of_n_config(seeds[0]), "preflight": config["preflight"],
        "threads": {"cores": all_cores(), "train": threads_of("train"),
                    "evaluate": threads_of("evaluate")},
        "extensions": config["train"]["extensions"],
        "trainers": {m: trainer_config(m, str(config[m][METHODS[m].swept][0]), seeds[0])
                     for m in trained},
        "counts": {
            "train_prompts": config["data"]["n_train_prompts"],
            "samples": config["data"]["n_train_prompts"] * config["sample"]["n_per_prompt"],
            "eval_prompts": config["evaluate"]["n_prompts"],
            "eval_samples": config["evaluate"]["n_prompts"] * config["evaluate"]["samples_per_prompt"],
            "jobs": {m: len(config[m][METHODS[m].swept]) * len(seeds) for m in trained},
            "policies": len(policies),
            "best_of_n_jobs": len(seeds) if "best_of_n" in config["train"]["methods"] else 1,
            "cpu_jobs": {"data": 1, "tokenizer": 1, "prompts": 2, "pairs": 1, "table": 1,
                         "optimal": 1, "comparison": 1, "plots": 1, "side_by_side": 1},
        },
    }


def trainer_params(wildcards):
    return as_arg(trainer_config(wildcards.method, wildcards.value, wildcards.seed))


def trained_policy(wildcards):
    """The policy id of a training job (round 1's or a later round's)."""
    return policy_id(wildcards.method, wildcards.value, wildcards.seed,
                     int(wildcards.get("round", 1)))


REWARD_MODEL = "results/reward_model/model"
# Round r >= 2 of an iterated method: its samples, scores, pairs and pi_ref's log-probs of them.
ROUND = policy_path(LATER, "data")


def sampler(wildcards):
    """The policy that sampled a round's data: pi_ref for round 1, round r - 1's policy after."""
    rnd = int(wildcards.get("round", 1))
    if rnd == 1:
        return REFERENCE, 1
    return policy_id(wildcards.method, wildcards.value, wildcards.seed, rnd - 1), rnd


def previous_round(wildcards):
    """The policy round r starts from and samples its data with: round r - 1's."""
    return policy_path(sampler(wildcards)[0], "model")


# The number format of the torch stages on a CPU, passed to each as --precision and a param of
# its rule, so that changing it reruns them (their numbers change with it).
PRECISION = config["resources"]["cpu_precision"]


# What each job asks a cluster for: `resources.gpu_rules` for the torch stages and
# `resources.cpu_rules` for the others, so that a preset scales them together.
GPU = dict(config["resources"]["gpu_rules"])
CPU = dict(config["resources"]["cpu_rules"])
SCORE = GPU if config["reward"]["backend"] == "hf" else CPU  # VADER needs no GPU
# sft and the trainers run data-parallel on `resources.data_parallel` GPUs, one process each.
PARALLEL = config["resources"]["data_parallel"]
TRAIN = GPU | {"gpu": GPU.get("gpu", 0) * PARALLEL}
LAUNCH = "python -m" if PARALLEL == 1 else f"torchrun --standalone --nproc_per_node {PARALLEL} -m"
