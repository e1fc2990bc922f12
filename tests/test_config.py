"""config.yaml spells out the defaults for a reader; the schema (with the sections the method
records keep) is where each default is declared. They must not drift apart."""

import yaml
from runner import REPO

from pipeline.methods import filled_schema


def test_config_yaml_repeats_every_default_of_the_schema_exactly():
    schema = filled_schema(REPO / "workflow/schemas/config.schema.yaml")["properties"]
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    differ = [
        f"{section}.{key}: config.yaml {config.get(section, {}).get(key, '(missing)')!r},"
        f" schema {spec['default']!r}"
        for section, sub in schema.items()
        for key, spec in sub.get("properties", {}).items()
        if "default" in spec and config.get(section, {}).get(key, "(missing)") != spec["default"]
    ]
    assert differ == []
    unknown = [
        f"{section}.{key}"
        for section, values in config.items()
        for key in values
        if key not in schema[section]["properties"]
    ]
    assert unknown == []
