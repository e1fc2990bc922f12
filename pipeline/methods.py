"""The methods of the study, one record each, and how a policy is named on disk.

A record is the one place that says what a method is: its name (its config section and the first
part of its policy ids), label and plot colour, what it trains on, whether it needs pi_ref's
log-probs, the key its sweep runs over, the section it takes its optimiser settings from, the
loss (or step) that trains it, and the JSON schema of its config section (type, default and
description of each key). The DAG, the config schema, the trainers, the plots and the tests all
read these records. A method of one's own is a loss function and a `register(Method(...))`
in a module named in `train.extensions` (docs/adding-a-method.md).

Kept free of heavy imports: the Snakefile uses it to lay out the DAG, so losses and steps are
named as "module:function" strings (or given as functions by an extension) and resolved by the
stage that runs them.
"""

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import yaml

# What a method trains on (`Method.data`).
PAIRS = "pairs"  # the 6 preference pairs per prompt (results/pairs.parquet)
RANKINGS = "rankings"  # each prompt's samples ranked best first, one row per prompt
RANKED_PAIRS = "ranked_pairs"  # the C(K, 2) pairs of exactly those rankings
UNPAIRED = "unpaired"  # each sample alone, desirable or not (results/unpaired.parquet)
ONLINE = "online"  # samples of its own, drawn while training, scored by the reward
NOTHING = "nothing"  # no training: Best-of-N answers with pi_ref's samples
DATA = (PAIRS, RANKINGS, RANKED_PAIRS, UNPAIRED, ONLINE, NOTHING)
# The trainer module that runs a method's jobs, by what it trains on.
TRAINERS = {
    PAIRS: "preference",
    RANKINGS: "preference",
    RANKED_PAIRS: "preference",
    UNPAIRED: "preference",
    ONLINE: "ppo",
    NOTHING: None,
}


@dataclass(frozen=True)
class Method:
    name: str  # config section, and the first part of its policy ids
    label: str  # legend entry: the method and, in brackets, what its sweep varies
    colour: str  # matplotlib colour
    swept: str  # the key of its section swept, one policy per value
    data: str  # one of DATA
    family: str  # the panel of the full frontier figure it is drawn in
    loss: str | Callable | None = None  # a pure loss, fed by name (pipeline.steps.loss_step)
    step: str | Callable | None = (
        None  # or a step of its own, when a loss needs more than log-probs
    )
    needs_reference: bool = False  # reads pi_ref's cached log-probs (rule `reference`)
    settings_from: str | None = None  # the section of its optimiser settings, when not its own
    chosen_only: bool = False  # learns from the chosen responses alone
    noisy_labels: bool = False  # its pairs' labels flipped at `rate` (pipeline.noise)
    learned_reward: bool = False  # online, against the learned reward model
    module: str | None = None  # the trainer module, when not the one its data implies
    group_size: int | None = None  # online groups: samples per prompt (None: sample.n_per_prompt)
    section: dict | None = None  # the JSON schemas of its config section's keys

    @property
    def trainer(self) -> str | None:
        return self.module or TRAINERS[self.data]

    @property
    def iterable(self) -> bool:
        """Trained for several rounds, each on the pairs of the previous round's samples
        (iterative DPO, the Cringe paper's iterative Pairwise Cringe): the offline trainers."""
        return self.trainer == "preference"

    @property
    def settings(self) -> str:
        """The config section its optimiser settings (lr, batch size, epochs, ...) come from."""
        return self.settings_from or self.name

    @property
    def reads(self) -> str | None:
        """The preference file it learns from: pairs or rankings; None for the others."""
        return {
            PAIRS: "pairs",
            RANKINGS: "rankings",
            RANKED_PAIRS: "rankings",
            UNPAIRED: "unpaired",
        }.get(self.data)


METHODS: dict[str, Method] = {}
# the panels of the full frontier figure, in this order (an extension's new family comes last)
FAMILIES = [
    "DPO: margin losses",
    "DPO: per-response terms",
    "f-DPO",
    "reference-free",
    "unpaired",
    "rankings",
    "noisy labels",
    "online RL",
    "sampling",
]
REFERENCE = "sft"  # the policy id of pi_ref
RESERVED = {REFERENCE, "pi_ref", "optimal", "pool"}


def register(method: Method) -> Method:
    """Add a method to the study's catalogue: the public entry point for methods of one's own."""
    if (
        method.name in METHODS
        or method.name in RESERVED
        or not re.fullmatch(r"[a-z][a-z0-9_]*", method.name)
    ):
        raise ValueError(f"method name '{method.name}' is taken or not of the form [a-z][a-z0-9_]*")
    if method.data not in DATA:
        raise ValueError(f"method {method.name}: data '{method.data}' is not one of {DATA}")
    if method.trainer == "preference" and (method.loss is None) == (method.step is None):
        raise ValueError(f"method {method.name}: give exactly one of loss and step")
    METHODS[method.name] = method
    return method


def method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}'; known: {', '.join(METHODS)}")
    return METHODS[name]


def resolve(ref):
    """A loss or step given as "module:name" (an extension's module, loaded from a file, is named
    `extension_<file stem>`), imported; one given as an object (a function, an online method's
    Objective) as it is."""
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


EXTENSION_OF: dict[str, str] = {}  # method name -> the train.extensions entry that registered it


def load_extensions(paths: list[str]) -> None:
    """Import each module of `train.extensions` (a .py file or an importable module name), whose
    `register` calls add its methods. A module already imported is not run twice. A module that
    cannot be found or imported, or whose registration is refused, stops here in one line naming
    the entry."""
    for entry in paths:
        before = set(METHODS)
        try:
            if entry.endswith(".py"):
                path = Path(entry).expanduser().resolve()
                if not path.is_file():
                    raise FileNotFoundError(f"train.extensions: '{entry}' does not exist")
                name = f"extension_{path.stem}"
                if name in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]  # not half-imported the next time
                    raise
            else:
                importlib.import_module(entry)
        except FileNotFoundError:
            raise
        except SyntaxError as err:
            raise ValueError(
                f"train.extensions: '{entry}' has a syntax error at line {err.lineno}: {err.msg}"
            ) from None
        except Exception as err:  # noqa: BLE001 - whatever the module raised, named in one line
            raise ValueError(
                f"train.extensions: '{entry}' failed to load: {type(err).__name__}: {err}"
            ) from None
        EXTENSION_OF.update(dict.fromkeys(set(METHODS) - before, entry))


# The JSON schemas of a method's config keys, which its record keeps (`Method.section`).
def swept(
    default: list,
    description: str = "swept; one policy per value",
    minimum: float | None = 0,
    exclusive: bool = True,
    maximum: float | None = None,
    kind: str = "number",
) -> dict:
    """A swept key: a list of distinct values (numbers above `minimum`, unless it is None)."""
    items = {"type": kind}
    if minimum is not None:
        items["exclusiveMinimum" if exclusive else "minimum"] = minimum
    if maximum is not None:
        items["maximum"] = maximum
    return {
        "description": description,
        "type": "array",
        "minItems": 1,
        "uniqueItems": True,
        "items": items,
        "default": default,
    }


def number(default: float, description: str | None = None, **bounds) -> dict:
    described = {} if description is None else {"description": description}
    return {"type": "number", "default": default, **described, **bounds}


def integer(default: int, description: str | None = None, minimum: int = 1) -> dict:
    described = {} if description is None else {"description": description}
    return {"type": "integer", "minimum": minimum, "default": default, **described}


def choice(default: str, *others: str) -> dict:
    return {"type": "string", "enum": [default, *others], "default": default}


def training_keys(unit: str, checkpoint_every: int) -> dict:
    """The keys of every trainer's section after its optimiser's: memory, compilation,
    checkpoints and points along the run, counted in its `unit` (steps or iterations)."""
    return {
        "gradient_checkpointing": {
            "type": "boolean",
            "default": False,
            "description": "recompute activations in the backward pass: less memory, one more"
            " forward pass per step",
        },
        "compile": {
            "type": "boolean",
            "default": False,
            "description": "torch.compile the training forward pass (fused kernels; the first"
            " steps compile, so only long runs gain)",
        },
        "checkpoint_every": integer(
            checkpoint_every,
            f"{unit} between checkpoints (0: none); a rerun resumes from the last",
            minimum=0,
        ),
        "trajectory": {
            "description": f"fractions of each run's {unit} (strictly between 0 and 1) at which"
            " the policy is also saved and evaluated: points along the run, drawn as its"
            " trajectory",
            "type": "array",
            "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "uniqueItems": True,
            "default": [],
        },
    }


# the optimiser and batches of the pairwise trainers (dpo's and cringe's sections; the other
# offline methods take dpo's)
PAIRWISE_TRAINING = {
    "optimizer": choice("adamw", "rmsprop"),
    "lr": number(5.0e-4, exclusiveMinimum=0),
    "batch_size": integer(32),
    "epochs": integer(1),
    "warmup_steps": integer(10),
    "max_grad_norm": number(10.0, exclusiveMinimum=0),
    "micro_batch_size": {
        "type": ["integer", "null"],
        "minimum": 1,
        "default": None,
        "description": "rows per forward pass (gradient accumulation up to batch_size); null:"
        " the whole batch",
    },
    **training_keys("steps", 50),
}
BETAS = [0.1, 1.0]
NOISE_RATE = swept(
    [0.2, 0.4],
    "swept; flip: the fraction of labels flipped; outliers: the fraction replaced by a coin flip",
    minimum=0,
    exclusive=False,
    maximum=1,
)
NOISE = {
    "mode": choice("flip", "outliers"),
    "beta": number(0.1, exclusiveMinimum=0),
}


L = "pipeline.losses:"
S = "pipeline.steps:"
# The slides' table
register(
    Method(
        name="dpo",
        label="DPO (beta)",
        colour="tab:blue",
        swept="beta",
        data=PAIRS,
        family="DPO: margin losses",
        loss=L + "dpo_loss",
        needs_reference=True,
        section={"beta": swept(BETAS), **PAIRWISE_TRAINING},
    )
)
register(
    Method(
        name="cringe",
        label="Pairwise Cringe (b)",
        colour="tab:green",
        swept="b",
        data=PAIRS,
        family="reference-free",
        step=S + "cringe_step",
        section={
            "b": swept([0.0], "swept; margin of the gate g = sigmoid((b - M) / tau)", None),
            "tau": number(1.0, exclusiveMinimum=0),
            "k": integer(5, "top-k candidates for the positive token"),
            "gate_ce": {
                "type": "boolean",
                "default": True,
                "description": "true: g * (L_CE + L_Cr); false: L_CE + g * L_Cr",
            },
            **PAIRWISE_TRAINING,
        },
    )
)
register(
    Method(
        name="ppo",
        label="PPO, true reward (target KL)",
        colour="tab:red",
        swept="target_kl",
        data=ONLINE,
        family="online RL",
        section={
            "target_kl": swept(
                [2.0, 6.0], "swept; target of the adaptive KL controller (nats per sequence)"
            ),
            "adaptive_kl": {"type": "boolean", "default": True},
            "init_kl_coef": number(0.05, minimum=0),
            "horizon": integer(256),
            "iterations": integer(25),
            "rollout_size": integer(64, minimum=2),
            "minibatch_size": integer(16),
            "ppo_epochs": integer(4),
            "optimizer": choice("adamw", "rmsprop"),
            "lr": number(2.0e-4, exclusiveMinimum=0),
            "warmup_steps": integer(5),
            "cliprange": number(0.2, exclusiveMinimum=0),
            "cliprange_value": number(0.2, exclusiveMinimum=0),
            "vf_coef": number(0.1, minimum=0),
            "gamma": number(1.0, minimum=0, maximum=1),
            "lam": number(0.95, minimum=0, maximum=1),
            "max_grad_norm": number(1.0, exclusiveMinimum=0),
            **training_keys("iterations", 5),
        },
    )
)
# The DPO paper's other baselines
register(
    Method(
        name="ipo",
        label="IPO (tau)",
        colour="tab:purple",
        swept="tau",
        data=PAIRS,
        family="DPO: margin losses",
        loss=L + "ipo_loss",
        needs_reference=True,
        settings_from="dpo",
        section={
            "tau": swept([0.05, 0.5], "swept; IPO regresses the log-ratio margin onto 1 / (2 tau)")
        },
    )
)
register(
    Method(
        name="unlikelihood",
        label="Unlikelihood (alpha)",
        colour="tab:brown",
        swept="alpha",
        data=PAIRS,
        family="reference-free",
        loss=L + "unlikelihood_loss",
        settings_from="dpo",
        section={"alpha": swept([0.1, 1.0], exclusive=False)},
    )
)
register(
    Method(
        name="preferred_ft",
        label="Preferred-FT (epochs)",
        colour="tab:olive",
        swept="epochs",
        data=PAIRS,
        family="reference-free",
        loss=L + "preferred_ft_loss",
        settings_from="dpo",
        chosen_only=True,
        section={"epochs": swept([1], minimum=1, exclusive=False, kind="integer")},
    )
)
register(
    Method(
        name="best_of_n",
        label="Best-of-N (N; KL: the bound)",
        colour="tab:gray",
        swept="n",
        data=NOTHING,
        family="sampling",
        section={
            "n": swept(
                [4, 16, 64],
                "swept; all values share one pool of max(n) samples per prompt",
                minimum=1,
                exclusive=False,
                kind="integer",
            )
        },
    )
)
# Noisy labels
register(
    Method(
        name="dpo_noisy",
        label="DPO, noisy labels (rate)",
        colour="tab:cyan",
        swept="rate",
        data=PAIRS,
        family="noisy labels",
        loss=L + "dpo_loss",
        needs_reference=True,
        settings_from="dpo",
        noisy_labels=True,
        section={"rate": NOISE_RATE, **NOISE},
    )
)
register(
    Method(
        name="cdpo_noisy",
        label="conservative DPO, noisy labels (rate)",
        colour="tab:pink",
        swept="rate",
        data=PAIRS,
        family="noisy labels",
        loss=L + "conservative_dpo_loss",
        needs_reference=True,
        settings_from="dpo",
        noisy_labels=True,
        section={
            "rate": NOISE_RATE,
            **NOISE,
            "label_smoothing": number(0.2, minimum=0, exclusiveMaximum=0.5),
        },
    )
)
# The RLHF route
register(
    Method(
        name="ppo_rm",
        label="PPO, learned reward (target KL)",
        colour="tab:orange",
        swept="target_kl",
        data=ONLINE,
        family="online RL",
        settings_from="ppo",
        learned_reward=True,
        section={"target_kl": swept([2.0, 6.0])},
    )
)
# Best-choice data
register(
    Method(
        name="plackett_luce",
        label="Plackett-Luce on rankings (beta)",
        colour="gold",
        swept="beta",
        data=RANKINGS,
        family="rankings",
        step=S + "plackett_luce_step",
        needs_reference=True,
        settings_from="dpo",
        section={"beta": swept([0.1])},
    )
)
register(
    Method(
        name="dpo_ranked",
        label="DPO on the rankings' pairs (beta)",
        colour="navy",
        swept="beta",
        data=RANKED_PAIRS,
        family="rankings",
        loss=L + "dpo_loss",
        needs_reference=True,
        settings_from="dpo",
        section={"beta": swept([0.1])},
    )
)


def pairwise(
    name: str,
    label: str,
    colour: str,
    loss: str,
    family: str = "DPO: margin losses",
    needs_reference: bool = True,
    swept_key: str = "beta",
    values=BETAS,
    **keys,
) -> Method:
    """A method trained on the pairs by a pure loss, with DPO's optimiser settings; `keys` are the
    JSON schemas of its other settings."""
    return register(
        Method(
            name=name,
            label=label,
            colour=colour,
            swept=swept_key,
            data=PAIRS,
            family=family,
            loss=L + loss,
            needs_reference=needs_reference,
            settings_from="dpo",
            section={swept_key: swept(values), **keys},
        )
    )


# the losses that score each response of a pair on its own rather than only their margin
PER_RESPONSE = "DPO: per-response terms"
# TRL 1.16's DPOTrainer loss types (sigmoid and ipo above: dpo, ipo), f_divergence_type, and its
# reference-free trainers (CPO/SimPO, ORPO)
pairwise("slic", "SLiC hinge (beta)", "darkred", "slic_hinge_loss")
pairwise(
    "ipo_mean",
    "IPO, per-token mean log-ratios (tau)",
    "mediumpurple",
    "ipo_mean_loss",
    swept_key="tau",
    values=[0.05, 0.5],
)
pairwise(
    "exo",
    "EXO (beta)",
    "teal",
    "exo_loss",
    epsilon=number(1e-3, "EXO's label smoothing eps", exclusiveMinimum=0, exclusiveMaximum=1),
)
pairwise("nca", "NCA (beta)", "darkgoldenrod", "nca_loss", family=PER_RESPONSE)
pairwise(
    "robust_dpo",
    "robust DPO (beta)",
    "indigo",
    "robust_dpo_loss",
    epsilon=number(0.1, "the assumed rate of flipped labels", minimum=0, exclusiveMaximum=0.5),
)
pairwise("bco_pair", "BCO, pairs (beta)", "sienna", "bco_pair_loss", family=PER_RESPONSE)
pairwise("sppo_hard", "SPPO, hard labels (beta)", "crimson", "sppo_hard_loss", family=PER_RESPONSE)
pairwise("aot", "AOT (beta)", "steelblue", "aot_loss")
pairwise("aot_unpaired", "AOT, unpaired (beta)", "lightsteelblue", "aot_unpaired_loss")
pairwise("apo_zero", "APO-zero (beta)", "forestgreen", "apo_zero_loss", family=PER_RESPONSE)
pairwise("apo_down", "APO-down (beta)", "yellowgreen", "apo_down_loss", family=PER_RESPONSE)
pairwise(
    "discopop",
    "DiscoPOP (beta)",
    "magenta",
    "discopop_loss",
    tau=number(0.05, "the temperature of the logistic/exponential mix", exclusiveMinimum=0),
)
pairwise(
    "dpo_norm",
    "DPO, per-token mean log-ratios (beta)",
    "royalblue",
    "dpo_norm_loss",
    values=[1.0, 10.0],
)
pairwise(
    "fdpo_forward_kl",
    "f-DPO, forward KL (beta)",
    "darkcyan",
    "f_dpo_forward_kl_loss",
    family="f-DPO",
)
pairwise("fdpo_js", "f-DPO, Jensen-Shannon (beta)", "cadetblue", "f_dpo_js_loss", family="f-DPO")
pairwise(
    "fdpo_alpha",
    "f-DPO, alpha-divergence (beta)",
    "darkslateblue",
    "f_dpo_alpha_loss",
    family="f-DPO",
    alpha=number(0.5, "alpha of the alpha-divergence (1: the reverse KL, DPO)", exclusiveMinimum=0),
)
pairwise(
    "simpo",
    "SimPO (beta)",
    "orangered",
    "simpo_loss",
    family="reference-free",
    needs_reference=False,
    values=[2.0, 10.0],
    gamma=number(1.0, "the target margin of the length-normalised rewards", minimum=0),
)
pairwise(
    "cpo",
    "CPO (beta)",
    "chocolate",
    "cpo_loss",
    family="reference-free",
    needs_reference=False,
    alpha=number(1.0, "weight of the NLL term on the chosen response", minimum=0),
)
pairwise(
    "orpo",
    "ORPO (lambda)",
    "deeppink",
    "orpo_loss",
    family="reference-free",
    needs_reference=False,
    swept_key="lam",
    values=[0.1, 1.0],
)

# Online, without a value head, each on groups of its own samples per prompt (stages.online)
register(
    Method(
        name="grpo",
        label="GRPO, true reward (beta)",
        colour="firebrick",
        swept="beta",
        data=ONLINE,
        family="online RL",
        step=S + "GRPO",
        settings_from="ppo",
        module="online",
        section={"beta": swept([0.04, 0.2], exclusive=False)},
    )
)
register(
    Method(
        name="rloo",
        label="RLOO, true reward (beta)",
        colour="salmon",
        swept="beta",
        data=ONLINE,
        family="online RL",
        step=S + "RLOO",
        settings_from="ppo",
        module="online",
        section={"beta": swept([0.05, 0.2], exclusive=False)},
    )
)
register(
    Method(
        name="online_dpo",
        label="online DPO, true reward (beta)",
        colour="mediumblue",
        swept="beta",
        data=ONLINE,
        family="online RL",
        step=S + "ONLINE_DPO",
        settings_from="ppo",
        module="online",
        group_size=2,
        section={"beta": swept(BETAS)},
    )
)

# KTO: unpaired desirable and undesirable samples (each prompt's above and below its median)
register(
    Method(
        name="kto",
        label="KTO (beta)",
        colour="darkorange",
        swept="beta",
        data=UNPAIRED,
        family="unpaired",
        step=S + "kto_step",
        needs_reference=True,
        settings_from="dpo",
        section={
            "beta": swept(BETAS),
            "desirable_weight": number(1.0, "lambda_D", exclusiveMinimum=0),
            "undesirable_weight": number(1.0, "lambda_U", exclusiveMinimum=0),
        },
    )
)


def filled_schema(path) -> dict:
    """The config schema file with the method lists filled from the records (train.full_methods'
    default: every built-in method but train.methods' default), and a section for each method
    that keeps its schema in its record."""
    schema = yaml.safe_load(Path(path).read_text())
    sections = schema["properties"]
    train = sections["train"]["properties"]
    for key in ("methods", "full_methods"):
        train[key]["items"]["enum"] = list(METHODS)
    train["full_methods"]["default"] = [
        m for m in METHODS if m not in EXTENSION_OF and m not in train["methods"]["default"]
    ]
    sections["iterative"]["properties"]["methods"]["items"]["enum"] = [
        m for m, r in METHODS.items() if r.iterable
    ]
    for record in METHODS.values():
        if record.section is None:
            where = EXTENSION_OF.get(record.name)
            raise ValueError(
                f"method {record.name}"
                + (f" (train.extensions '{where}')" if where else "")
                + ": registered without a `section` schema for its config keys"
            )
        sections[record.name] = {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": record.section,
        }
    return schema


LATER_ROUND = r"[2-9]|[1-9]\d+"  # rounds with a /round<r> suffix: round 1 is the ordinary run
POINT = r"\d[0-9.e-]*"  # a point along a run: the fraction of its steps, as point_name writes it


def point_name(fraction: float) -> str:
    """A point along a run (`trajectory`) as its policy id and folder name write it."""
    return f"{fraction:g}"


class PolicyId(NamedTuple):
    method: str
    value: str  # as written in the id
    seed: int
    round: int  # 1: the ordinary run
    at: float | None  # the fraction of its run's steps of a point along it; None: the final policy


def policy_id(method: str, value, seed: int, rnd: int = 1, at: float | None = None) -> str:
    """<method>/<value>/seed<n>, /round<r> after it from the second round on (round 1 is the
    ordinary run: its id, and so its cached artifacts, do not change when rounds are added), and
    /at/<fraction> for a point along the run; the final policy has none."""
    pid = f"{method}/{value}/seed{seed}"
    pid = pid if rnd == 1 else f"{pid}/round{rnd}"
    return pid if at is None else f"{pid}/at/{point_name(at)}"


# Where a policy's artifacts lie, by its id: the one path template every rule and script uses. A
# rule passes an id of wildcards, e.g. policy_id("{method}", "{value}", "{seed}").
POLICY_PATHS = {
    "model": "results/policies/{pid}/model",  # its model folder
    "metrics": "results/policies/{pid}/metrics.csv",  # its run's metrics
    "trajectory": "results/policies/{pid}/at",  # the points along its run
    "eval": "results/eval/{pid}",  # its evaluation's files
    "data": "results/rounds/{pid}",  # a later round's samples, pairs and pi_ref's log-probs
    "checkpoint": "results/checkpoints/{flat}",  # its run's checkpoint, while it trains
    "pool": "results/eval/{pid}.parquet",  # Best-of-N's pool of pi_ref samples (pi*'s)
}


def policy_path(pid: str, part: str, *inside: str) -> str:
    """The path of a policy's `part` (a key of POLICY_PATHS), or of a file `inside` it."""
    return "/".join([POLICY_PATHS[part].format(pid=pid, flat=pid.replace("/", "_")), *inside])


def job_log(stage: str, pid: str) -> str:
    """The log of a job that makes a policy or its round's data, named after both (once where
    the policy is named after the stage, as Best-of-N's are)."""
    name = pid.replace("/", "_")
    return f"results/logs/{name if pid.startswith(stage + '/') else f'{stage}_{name}'}.log"


def policy_id_pattern(methods) -> str:
    """The regular expression of the policy ids of `methods` (pi_ref's, "sft", is not one)."""
    return (
        rf"({'|'.join(map(re.escape, methods))})/[^/]+/seed\d+(/round({LATER_ROUND}))?"
        rf"(/at/{POINT})?"
    )


def split_policy_id(pid: str) -> PolicyId:
    """(method, value as written, seed, round, at) of a trained or Best-of-N policy's id: the one
    place that reads the format."""
    if not re.fullmatch(policy_id_pattern(METHODS), pid):
        raise ValueError(
            f"'{pid}' is not a policy id of the form <method>/<value>/seed<n>"
            "[/round<r>][/at/<fraction>] of a known method"
        )
    method_name, value, seed, *rest = pid.split("/")
    rnd = int(rest[0][5:]) if rest and rest[0].startswith("round") else 1
    at = float(rest[-1]) if len(rest) >= 2 and rest[-2] == "at" else None
    return PolicyId(method_name, value, int(seed.removeprefix("seed")), rnd, at)


def run_of(pid: str) -> str:
    """The id of the run a policy belongs to: its final policy's (a point along it drops /at/)."""
    method_name, value, seed, rnd, _ = split_policy_id(pid)
    return policy_id(method_name, value, seed, rnd)


def parse_policy_id(pid: str) -> dict:
    """{'method', 'param', 'value', 'seed', 'round', 'at'} of a policy id; pi_ref is method
    'pi_ref'. `at` is the fraction of its run's steps (1 for the final policy; NaN for pi_ref and
    the policies no run trains)."""
    if pid == REFERENCE:
        return {
            "method": "pi_ref",
            "param": "",
            "value": float("nan"),
            "seed": float("nan"),
            "round": float("nan"),
            "at": float("nan"),
        }
    method_name, value, seed, rnd, at = split_policy_id(pid)
    trained = METHODS[method_name].trainer is not None
    return {
        "method": method_name,
        "param": METHODS[method_name].swept,
        "value": float(value),
        "seed": seed,
        "round": rnd,
        "at": (1.0 if at is None else at) if trained else float("nan"),
    }
