"""A stage's settings as one typed record, read once from the JSON its rule passes (`--params`).

Each stage has a record (its `Settings`) whose fields are every setting it reads, as CleanRL's
`Args` or nanoGPT's `GPTConfig` do: its section's keys inherited from their declarations in
pipeline.config, other sections' keys borrowed by name, what its rule computes. `read` builds
it from the rule's JSON and refuses, before any work, a setting that is missing, unknown or of the
wrong type, naming the stage and the key: the schema checks the config a user writes, this checks
that what a rule passes is what its stage reads.

A field typed by another dataclass is a nested section (e.g. `reward`). A field marked `rest()`
collects the keys the record does not name: a method's own settings (beta, k, ...), which the
method's loss or step declares by name and its trainer checks.
"""

import dataclasses
import types
import typing


def rest():
    """A field for the keys a record does not name (a method's own settings)."""
    return dataclasses.field(default_factory=dict, metadata={"rest": True})


def read(cls, params: dict, where: str):
    """`params` as a `cls`, every key checked; `where` names the stage (or section) in errors."""
    if not isinstance(params, dict):
        raise ValueError(f"{where}: expected a mapping of settings, got {params!r}")
    fields = dataclasses.fields(cls)
    hints = typing.get_type_hints(cls)
    collector = next((f.name for f in fields if f.metadata.get("rest")), None)
    named = {f.name for f in fields if f.name != collector}
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in params]
    unknown = sorted(set(params) - named) if collector is None else []
    if missing or unknown:
        problems = [f"missing setting(s) {missing}"] * bool(missing) + [
            f"unknown setting(s) {unknown}"
        ] * bool(unknown)
        raise ValueError(f"{where}: {'; '.join(problems)}; it reads {sorted(named)}")
    values = {
        name: conform(params[name], hints[name], f"{where}.{name}")
        for name in named
        if name in params
    }
    if collector is not None:
        values[collector] = {k: v for k, v in params.items() if k not in named}
    return cls(**values)


def conform(value, hint, key: str):
    """`value` checked against the field's type (JSON's: a float may be written as an int)."""
    if dataclasses.is_dataclass(hint):
        return read(hint, value, key)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return conform(value, arg, key)
            except ValueError as err:
                errors.append(err)
        raise errors[0]
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{key} = {value!r}: one of {', '.join(map(repr, args))}")
        return value
    if hint is typing.Any:
        return value
    expected = origin or hint
    ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise ValueError(f"{key} = {value!r}: expected {getattr(hint, '__name__', hint)}")
    if origin is list and args:
        return [conform(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict and len(args) == 2:
        return {k: conform(v, args[1], f"{key}.{k}") for k, v in value.items()}
    return value
