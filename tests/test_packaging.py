"""The conda environment for `--sdm conda` lists the same packages as pyproject.toml."""

import pytest
import tomllib
import yaml
from runner import REPO


def test_conda_env_matches_pyproject_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs" / "pipeline.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(p for p in pip if not p.startswith("-e")) == sorted(project)


@pytest.mark.parametrize("preset", ["paper", "smollm2"])
def test_a_preset_overrides_only_known_keys(preset):
    from pipeline.methods import filled_schema

    schema = filled_schema()
    sections = {name: s["properties"] for name, s in schema["properties"].items()}
    preset = yaml.safe_load((REPO / f"workflow/presets/{preset}.yaml").read_text())
    for section, values in preset.items():
        assert section in sections, section
        assert set(values) <= set(sections[section]), section
