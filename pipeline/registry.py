"""A method's record and the registry of them: the one place that says what a method is (its
name, which is its config section and the first part of its policy ids; label and plot colour;
what it trains on; whether it needs pi_ref's log-probs; the key its sweep runs over; the section
it takes its optimiser settings from; the loss or step that trains it; the JSON schema of its
config section). `register` adds a method, `pairwise` and `online` register the two common kinds,
`load_extensions` imports the modules of `train.extensions` that register methods of one's own
(docs/adding-a-method.md), and `filled_schema` puts every record's section into the config schema.
The built-in methods are in pipeline.methods, which imports this module and registers them.

Kept free of heavy imports: the Snakefile uses it to lay out the DAG, so losses and steps are
named as "module:name" strings (or given as objects by an extension) and resolved by the stage
that runs them, which imports torch.
"""

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pipeline import config

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
    ONLINE: "online",  # an objective on groups of its own samples; PPO's records name "ppo"
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


# The keys the pairwise trainers share: dpo's and cringe's sections' (the other offline methods
# take dpo's).
PAIRWISE_TRAINING = config.properties(config.Pairwise)


LOSSES = "pipeline.losses:"  # where `pairwise`'s losses are


def pairwise(
    name: str,
    label: str,
    colour: str,
    loss: str,
    family: str = "DPO: margin losses",
    needs_reference: bool = True,
    swept_key: str = "beta",
    values=(0.1, 1.0),
    **keys,
) -> Method:
    """A method trained on the pairs by a pure loss of pipeline.losses, named without its module,
    with DPO's optimiser settings; `keys` are the JSON schemas of its other settings."""
    return register(
        Method(
            name=name,
            label=label,
            colour=colour,
            swept=swept_key,
            data=PAIRS,
            family=family,
            loss=LOSSES + loss,
            needs_reference=needs_reference,
            settings_from="dpo",
            section={swept_key: swept(list(values)), **keys},
        )
    )


def online(
    name: str,
    label: str,
    colour: str,
    objective: str | Callable,
    sweep: dict,
    swept_key: str = "beta",
    group_size: int | None = None,
    **keys,
) -> Method:
    """A method that learns from groups of its own samples per prompt by an objective (an
    `Objective` of pipeline.steps, or its "module:name"), with PPO's optimiser and rollout
    settings; `sweep` is the JSON schema of its swept key (`swept(...)`), `keys` those of its other
    settings."""
    return register(
        Method(
            name=name,
            label=label,
            colour=colour,
            swept=swept_key,
            data=ONLINE,
            family="online RL",
            step=objective,
            settings_from="ppo",
            group_size=group_size,
            section={swept_key: sweep, **keys},
        )
    )


def method_setting(name: str, key: str):
    """A stage's field that is a key of a method's section, declared in its record (`borrow` for
    the stages' sections)."""
    return Annotated[
        config.python_type(method(name).section[key]), config.Borrowed(f"{name}.{key}")
    ]


def filled_schema() -> dict:
    """The config schema: the stages' sections from their records (pipeline.config), the method
    lists filled from the method records (train.full_methods' default: every built-in method but
    train.methods' default), and a section for each method from its record."""
    sections = {name: config.section_schema(cls) for name, cls in config.SECTIONS.items()}
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "Configuration of the IMDb controlled-sentiment pipeline. Unknown keys are"
        " rejected; missing keys take the defaults of pipeline/config.py and the method records.",
        "type": "object",
        "additionalProperties": False,
        "properties": sections,
    }
    train = sections["train"]["properties"]
    for key in ("methods", "full_methods"):
        train[key]["items"] |= {"enum": list(METHODS)} | METHOD_LIST
    train["full_methods"]["default"] = [
        m for m in METHODS if m not in EXTENSION_OF and m not in train["methods"]["default"]
    ]
    sections["iterative"]["properties"]["methods"]["items"] |= {
        "enum": [m for m, r in METHODS.items() if r.iterable]
    } | METHOD_LIST
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


METHOD_LIST = {"description": "the enum is filled from pipeline/methods.py's records"}
