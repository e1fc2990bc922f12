"""Each setting is declared once: its type, default, bounds and description in its section's
record (pipeline/config.py) or its method's record, from which the schema is built; a stage's
record inherits or borrows it. config.yaml spells out the defaults for a reader and must not drift
from them."""

import dataclasses
import importlib
import inspect
import typing

import pytest
import yaml
from runner import REPO

from pipeline.config import SECTIONS, borrow, borrowed
from pipeline.methods import METHODS, filled_schema, method_setting


def left_to_the_records(config: dict, section: str, key: str) -> bool:
    """What config.yaml need not spell out, since a method's record holds it: the section of a
    method outside train.methods (and outside the sections they take settings from) that
    config.yaml does not list, and train.full_methods (every other built-in method)."""
    main = {m for name in config["train"]["methods"] for m in (name, METHODS[name].settings)}
    if (section, key) == ("train", "full_methods"):
        return True
    return section in METHODS and section not in main and section not in config


def test_config_yaml_repeats_every_default_of_the_schema_exactly():
    schema = filled_schema()["properties"]
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    differ = [
        f"{section}.{key}: config.yaml {config.get(section, {}).get(key, '(missing)')!r},"
        f" schema {spec['default']!r}"
        for section, sub in schema.items()
        for key, spec in sub.get("properties", {}).items()
        if "default" in spec
        and config.get(section, {}).get(key, "(missing)") != spec["default"]
        and not left_to_the_records(config, section, key)
    ]
    assert differ == []
    unknown = [
        f"{section}.{key}"
        for section, values in config.items()
        for key in values
        if key not in schema[section]["properties"]
    ]
    assert unknown == []


def stage_records() -> dict[str, type]:
    """The record each stage reads its settings into (its `Settings`; pipeline.rollout's Section
    for the online trainers' shared part), by module, with the sections' records."""
    found = {f"pipeline.config.{name}": cls for name, cls in SECTIONS.items()}
    for path in sorted((REPO / "pipeline/stages").glob("*.py")):
        module = importlib.import_module(f"pipeline.stages.{path.stem}")
        if dataclasses.is_dataclass(getattr(module, "Settings", None)):
            found[f"pipeline.stages.{path.stem}"] = module.Settings
    return found


def records_within(record) -> list[type]:
    """A record and the records its fields hold (nested sections such as `reward`)."""
    found = [record]
    for hint in typing.get_type_hints(record).values():
        for part in (hint, *typing.get_args(hint)):
            if dataclasses.is_dataclass(part):
                found += records_within(part)
    return found


def declared_twice(record) -> list[str]:
    """The fields of a record that declare a config key again: each field must be a setting
    (`config.setting`, declared there), a key of another section (`config.borrow`), what its rule
    computes (`config.given`), a method's own keys (`settings.rest`) or a nested record."""
    hints = typing.get_type_hints(record, include_extras=True)
    found = []
    for f in dataclasses.fields(record):
        plain = typing.get_type_hints(record)[f.name]
        marked = {"setting", "given", "rest"} & set(f.metadata)
        if not marked and f.name not in borrowed(record) and not dataclasses.is_dataclass(plain):
            found.append(f"{record.__module__}.{record.__qualname__}.{f.name}: {hints[f.name]}")
        elif "setting" in f.metadata and f.default is not dataclasses.MISSING:
            found.append(f"{record.__module__}.{record.__qualname__}.{f.name}: a second default")
    return found


def test_every_setting_is_declared_once():
    """A setting's type, default, bounds and description are its section record's (or its method
    record's); a stage's record inherits them, borrows them by name or collects a method's own
    keys, and types only what its rule computes."""

    @dataclasses.dataclass
    class Retyped:
        max_new_tokens: int
        lr: float = dataclasses.field(default=1.0, metadata={"setting": {}})

    assert [p.rsplit(".", 1)[1] for p in declared_twice(Retyped)] == [
        "max_new_tokens: <class 'int'>",
        "lr: a second default",
    ]
    found = [
        problem
        for record in stage_records().values()
        for part in records_within(record)
        for problem in declared_twice(part)
    ]
    assert found == []


def test_a_stage_borrows_what_exists_under_its_declared_type():
    """`borrow` resolves a source to its declaration, so a typo or a key that moved fails here."""
    assert typing.get_type_hints(
        type("R", (), {"__annotations__": {"x": borrow("sample.max_new_tokens")}})
    ) == {"x": int}
    assert typing.get_args(method_setting("best_of_n", "n"))[0] == list[int]
    with pytest.raises(KeyError):
        borrow("sample.no_such_key")


def test_every_method_record_declares_its_section():
    """A method's section is its record's (`Method.section`), built-in or an extension's."""
    assert all(m.section for m in METHODS.values())


def schema_descriptions(node: dict, path: str = "") -> dict[str, str]:
    """Every description of the filled schema, by the dotted key it describes."""
    found = {path: node["description"]} if path and isinstance(node.get("description"), str) else {}
    for key, sub in node.get("properties", {}).items():
        found |= schema_descriptions(sub, f"{path}.{key}".lstrip("."))
    for sub in node.get("oneOf", []):
        found |= schema_descriptions(sub, path)
    return found


def declared_text() -> dict[str, str]:
    """Where settings are declared (the sections' records, the method records and their helpers)
    and every stage's record's source, each with its whitespace collapsed (a Python string split
    over lines reads as one line)."""
    texts = {
        name: (REPO / name).read_text()
        for name in ("pipeline/config.py", "pipeline/registry.py", "pipeline/methods.py")
    }
    for name, record in stage_records().items():
        for part in records_within(record):
            if part.__module__ != "pipeline.config":
                texts[f"{part.__module__}.{part.__qualname__}"] = inspect.getsource(part)
    return {name: " ".join(text.replace('"\n', "").split()) for name, text in texts.items()}


def test_each_setting_is_described_in_one_place():
    """A setting's description is written once: in the schema file or a record's section (a
    section shared by several methods or stages counts once), not again in a stage's Settings
    comment or a second section. Its opening words (six, or all of a shorter one) find a copy."""
    schema = filled_schema()
    sources = declared_text()
    copies = {}
    for key, text in schema_descriptions(schema).items():
        opening = " ".join(text.split()[:6])
        where = [f"{name} x{n}" for name, body in sources.items() if (n := body.count(opening))]
        if sum(int(w.rsplit("x", 1)[1]) for w in where) > 1:
            copies[opening] = copies.get(opening, set()) | {key} | set(where)
    assert copies == {}


# What a schema node may hold. Anything else is a setting's description cut short: unquoted YAML
# ends a flow mapping's value at a comma and reads the rest as a key, which JSON Schema ignores.
KEYWORDS = {
    "$schema", "description", "type", "additionalProperties", "properties", "default", "enum",
    "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "items", "minItems",
    "uniqueItems", "minLength", "oneOf", "anyOf", "required",
}  # fmt: skip


def stray_words(node: dict, path: str = "") -> list[str]:
    """The keys of `node` and its subschemas that are not JSON Schema's, by dotted path."""
    found = [f"{path}: {key!r}" for key in node if key not in KEYWORDS]
    subschemas = [*node.get("properties", {}).items(), *enumerate(node.get("oneOf", []))]
    if isinstance(node.get("items"), dict):
        subschemas.append(("items", node["items"]))
    for key, sub in subschemas:
        found += stray_words(sub, f"{path}.{key}".lstrip("."))
    return found


def test_the_schema_holds_no_stray_words():
    """Every key of the filled schema is a JSON Schema keyword (catches a description that YAML
    cut at its comma: `{description: a, b}` leaves a key `b`)."""
    cut = yaml.safe_load("{properties: {n: {type: integer, description: held out, the first}}}")
    assert stray_words(cut) == ["n: 'the first'"]
    assert stray_words(filled_schema()) == []


def borrowed_table() -> dict[str, dict[str, str]]:
    """`BORROWED` of workflow/rules/common.smk: what the rules pass each stage from other
    sections, under the name its record reads."""
    source = (REPO / "workflow/rules/common.smk").read_text()
    start = source.index("\nTRACKING = ")
    end = source.index("\n\n\n", source.index("\nBORROWED = "))
    scope = {}
    exec(source[start:end], scope)
    return scope["BORROWED"]


# Each record a rule passes keys of other sections to, with the entries of BORROWED its rule uses
# (a trainer's: every trainer's, then its kind's).
BORROWERS = {
    "pipeline.stages.sft:Settings": ["sft"],
    "pipeline.stages.reward_model:Settings": ["reward_model"],
    "pipeline.stages.evaluate:Settings": ["evaluate"],
    "pipeline.stages.best_of_n:Settings": ["best_of_n"],
    "pipeline.frontiers:Optimal": ["optimal"],
    "pipeline.frontiers:Comparison": ["optimal", "comparison"],
    "pipeline.stages.leaderboard:Settings": ["optimal", "comparison"],
    "pipeline.stages.table:Settings": ["table"],
    "pipeline.stages.side_by_side:Settings": ["side_by_side"],
    "pipeline.stages.plots:Settings": ["plots"],
    "pipeline.config:Trainer": ["trainer"],
    "pipeline.stages.preference:Settings": ["trainer", "preference"],
    "pipeline.stages.ppo:Settings": ["trainer", "ppo"],
    "pipeline.stages.online:Settings": ["trainer", "online"],
}


def test_the_rules_pass_each_stage_what_its_record_borrows():
    """A record names where each borrowed key comes from (`borrow`); the rules pass it from
    `BORROWED`, which must say the same: same keys, same sources."""
    table = borrowed_table()
    differ = {}
    for reader, entries in BORROWERS.items():
        module, name = reader.split(":")
        record = getattr(importlib.import_module(module), name)
        passed = {key: source for entry in entries for key, source in table[entry].items()}
        # a key of the stage's own section that its method record declares (best_of_n's n)
        # is taken with `method_setting`, not borrowed from another section
        taken = {k: s for k, s in borrowed(record).items() if s.split(".")[0] not in entries}
        if taken != passed:
            differ[reader] = {"record": taken, "BORROWED": passed}
    assert differ == {}
    assert {entry for entries in BORROWERS.values() for entry in entries} == set(table)
