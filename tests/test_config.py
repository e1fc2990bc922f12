"""config.yaml spells out the defaults for a reader; the schema (with the sections the method
records keep) is where each setting's type, default and description are declared; each stage's
Settings record declares the type it reads. They must not drift apart."""

import dataclasses
import importlib
import inspect
import re
import types
import typing

import yaml
from runner import REPO

from pipeline.methods import METHODS, filled_schema


def left_to_the_records(config: dict, section: str, key: str) -> bool:
    """What config.yaml need not spell out, since a method's record holds it: the section of a
    method outside train.methods (and outside the sections they take settings from) that
    config.yaml does not list, and train.full_methods (every other built-in method)."""
    main = {m for name in config["train"]["methods"] for m in (name, METHODS[name].settings)}
    if (section, key) == ("train", "full_methods"):
        return True
    return section in METHODS and section not in main and section not in config


def test_config_yaml_repeats_every_default_of_the_schema_exactly():
    schema = filled_schema(REPO / "workflow/schemas/config.schema.yaml")["properties"]
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


# Each config section and the Settings record of the stage that reads it. A method's section is
# read by its trainer's record (the swept key as one value, the method's own keys collected).
SECTION_READERS = {
    "data": "pipeline.sources:Data",
    "sft": "pipeline.stages.sft:Settings",
    "prompts": "pipeline.stages.prompts:Settings",
    "sample": "pipeline.sampling:Settings",
    "reference": "pipeline.stages.reference:Settings",
    "reward_model": "pipeline.stages.reward_model:Settings",
    "evaluate": "pipeline.stages.evaluate:Settings",
    "optimal": "pipeline.frontiers:Optimal",
    "leaderboard": "pipeline.stages.leaderboard:Settings",
    "table": "pipeline.stages.table:Settings",
    "side_by_side": "pipeline.stages.side_by_side:Settings",
}
JSON_TYPES = {"integer": int, "number": float, "boolean": bool, "null": type(None)}


def python_types(spec: dict) -> set:
    """What a JSON schema admits, as the Python types (and a string enum's values) a record
    would declare for it."""
    if "enum" in spec:
        return {("str", v) for v in spec["enum"]}
    if "const" in spec:
        return {("str", spec["const"])}
    if "oneOf" in spec or "anyOf" in spec:
        return set().union(*map(python_types, spec.get("oneOf", spec.get("anyOf"))))
    kinds = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    return {
        list if k == "array" else dict if k == "object" else str if k == "string" else JSON_TYPES[k]
        for k in kinds
    }


def hinted_types(hint) -> set:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return set().union(*map(hinted_types, typing.get_args(hint)))
    if origin is typing.Literal:
        return {("str", v) for v in typing.get_args(hint)}
    if origin in (list, dict):
        return {origin}
    return {dict if dataclasses.is_dataclass(hint) else hint}


def disagreements(record, section: str, keys: dict, swept: str | None = None) -> list[str]:
    """Each key of a config section whose schema type the stage's record does not declare."""
    hints = typing.get_type_hints(record)
    collects = any(f.metadata.get("rest") for f in dataclasses.fields(record))
    found = []
    for key, spec in keys.items():
        spec = spec["items"] if key == swept else spec  # the job reads one value of the sweep
        if key not in hints:
            if not collects:
                found.append(f"{section}.{key}: not a field of {record.__qualname__}")
        elif python_types(spec) != hinted_types(hints[key]):
            found.append(
                f"{section}.{key}: schema {sorted(map(str, python_types(spec)))},"
                f" {record.__module__}.{record.__qualname__} {hints[key]}"
            )
    return found


def test_every_config_key_has_the_type_its_stages_record_declares():
    """The schema (with the method records' sections) and each stage's Settings record hold a
    setting's type; a key the record lacks or types otherwise fails here, not in a job."""
    schema = filled_schema(REPO / "workflow/schemas/config.schema.yaml")["properties"]
    found = []
    for section, reader in SECTION_READERS.items():
        module, name = reader.split(":")
        record = getattr(importlib.import_module(module), name)
        found += disagreements(record, section, schema[section]["properties"])
    for m in METHODS.values():
        if m.trainer is None:  # Best-of-N: its n is the best_of_n stage's
            continue
        record = importlib.import_module(f"pipeline.stages.{m.trainer}").Settings
        found += disagreements(record, m.name, schema[m.name]["properties"], m.swept)
    assert found == []


def test_no_method_keeps_its_section_in_the_schema_file():
    """A method's section is its record's (`Method.section`), built-in or an extension's."""
    raw = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    assert sorted(set(raw["properties"]) & set(METHODS)) == []
    assert all(m.section for m in METHODS.values())


def schema_descriptions(node: dict, path: str = "") -> dict[str, str]:
    """Every description of the filled schema, by the dotted key it describes."""
    found = {path: node["description"]} if path and isinstance(node.get("description"), str) else {}
    for key, sub in node.get("properties", {}).items():
        found |= schema_descriptions(sub, f"{path}.{key}".lstrip("."))
    for sub in node.get("oneOf", []):
        found |= schema_descriptions(sub, path)
    return found


# The records that read config sections besides SECTION_READERS: the trainers' and their parts.
RECORDS = [
    "pipeline.stages.preference:Settings",
    "pipeline.stages.ppo:Settings",
    "pipeline.stages.online:Settings",
    "pipeline.rollout:Section",
    "pipeline.lora:Lora",
    "pipeline.stages.best_of_n:Settings",
]


def declared_text() -> dict[str, str]:
    """Where settings are declared (the schema file, the method records and their helpers) and
    every Settings record's source, each with its whitespace collapsed (a folded YAML description
    or a Python string split over lines reads as one line)."""
    texts = {
        name: (REPO / name).read_text().replace('"\n', "")
        for name in (
            "workflow/schemas/config.schema.yaml",
            "pipeline/registry.py",
            "pipeline/methods.py",
        )
    }
    for reader in [*SECTION_READERS.values(), *RECORDS]:
        module, name = reader.split(":")
        texts[reader] = inspect.getsource(getattr(importlib.import_module(module), name))
    return {name: " ".join(text.split()) for name, text in texts.items()}


def test_each_setting_is_described_in_one_place():
    """A setting's description is written once: in the schema file or a record's section (a
    section shared by several methods or stages counts once), not again in a stage's Settings
    comment or a second section. Its opening words (six, or all of a shorter one) find a copy."""
    schema = filled_schema(REPO / "workflow/schemas/config.schema.yaml")
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
    assert stray_words(filled_schema(REPO / "workflow/schemas/config.schema.yaml")) == []


# Sections a trainer's record reads besides its method's: (section, record).
TRAINER_READS = [
    ("dpo", "pipeline.stages.preference:Settings"),
    ("ppo", "pipeline.rollout:Section"),
    ("ppo", "pipeline.stages.ppo:Settings"),
    ("train", "pipeline.stages.preference:Settings"),
    ("policy", "pipeline.stages.sft:Settings"),
    ("best_of_n", "pipeline.stages.best_of_n:Settings"),
]


def test_a_record_does_not_describe_a_setting_again():
    """A Settings field whose key the schema describes says nothing more of it in a comment,
    unless the comment starts by naming the section it is borrowed from (`# policy.lora`)."""
    schema = filled_schema(REPO / "workflow/schemas/config.schema.yaml")["properties"]
    again = []
    for section, reader in [*SECTION_READERS.items(), *TRAINER_READS]:
        module, name = reader.split(":")
        source = inspect.getsource(getattr(importlib.import_module(module), name))
        for key, comment in re.findall(r"^    (\w+): [^#\n]+#\s*(.*)$", source, re.MULTILINE):
            described = "description" in schema[section]["properties"].get(key, {})
            if described and not re.match(r"[a-z_]+\.[a-z_]+\b", comment):
                again.append(f"{reader}.{key}: # {comment}")
    assert again == []


def test_no_record_declares_a_default_of_a_setting():
    """A setting's default is the schema's (or its method record's): a stage's Settings field
    has none, so a rule that forgets to pass it fails in `read`, not with a second default."""
    schema = filled_schema(REPO / "workflow/schemas/config.schema.yaml")["properties"]
    defaulted = []
    for section, reader in [*SECTION_READERS.items(), *TRAINER_READS]:
        module, name = reader.split(":")
        for field in dataclasses.fields(getattr(importlib.import_module(module), name)):
            has = field.default is not dataclasses.MISSING or (
                field.default_factory is not dataclasses.MISSING and not field.metadata.get("rest")
            )
            if has and field.name in schema[section]["properties"]:
                defaulted.append(f"{reader}.{field.name}")
    assert defaulted == []
