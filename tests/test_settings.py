"""Each stage reads its settings once into a typed record: a missing, misspelt or mistyped
setting stops it at its start, naming the stage and the key."""

import json
from dataclasses import dataclass

import pytest
from conftest import PAIRWISE_PARAMS, PPO_PARAMS, SFT_PARAMS

from pipeline.settings import read, rest
from pipeline.stages import ppo, preference, sft


@dataclass(frozen=True)
class Inner:
    size: int
    name: str | None


@dataclass(frozen=True)
class Outer:
    lr: float
    steps: int
    flag: bool
    names: list[str]
    inner: Inner
    own: dict = rest()


@dataclass(frozen=True)
class Closed:
    lr: float


GOOD = {"lr": 1, "steps": 3, "flag": True, "names": ["a"], "inner": {"size": 2, "name": None}}


def test_a_record_is_read_with_its_nested_sections_and_own_settings():
    record = read(Outer, GOOD | {"beta": 0.1}, "stage")
    assert record.inner == Inner(2, None) and record.own == {"beta": 0.1}
    assert record.lr == 1 and record.names == ["a"], "a float written as an int keeps its value"


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {k: v for k, v in GOOD.items() if k != "steps"},
            r"stage: missing setting\(s\) \['steps'\]",
        ),
        (GOOD | {"steps": 2.5}, r"stage.steps = 2.5: expected int"),
        (GOOD | {"steps": True}, r"stage.steps = True: expected int"),
        (GOOD | {"lr": "0.1"}, r"stage.lr = '0.1': expected float"),
        (GOOD | {"names": ["a", 1]}, r"stage.names\[1\] = 1: expected str"),
        (GOOD | {"inner": {"size": 2}}, r"stage.inner: missing setting\(s\) \['name'\]"),
        (GOOD | {"inner": {"size": 2, "name": 3}}, r"stage.inner.name = 3: expected str"),
    ],
)
def test_a_bad_setting_is_named(params, message):
    with pytest.raises(ValueError, match=message):
        read(Outer, params, "stage")


def test_a_misspelt_setting_is_named_with_the_ones_the_stage_reads():
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['lrr'\]; it reads \['lr'\]"):
        read(Closed, {"lr": 0.1, "lrr": 0.1}, "stage")


def test_the_trainers_refuse_a_misspelt_setting_before_they_load_anything(tmp_path):
    """Through each stage's main(): no input file exists, so only the settings can stop it."""
    no = str(tmp_path / "missing")
    sft_params = SFT_PARAMS | {"epoch": 1, "batch_size": 4, "checkpoint_every": 0}
    with pytest.raises(
        ValueError,
        match=r"sft: missing setting\(s\) \['epochs'\]; unknown"
        r" setting\(s\) \['epoch'\]",
    ):
        sft.main(
            [
                "--params",
                json.dumps(sft_params),
                "--sft",
                no,
                "--tokenizer",
                no,
                "--model",
                no,
                "--metrics",
                no,
                "--eval",
                no,
            ]
        )
    ppo_params = {k: v for k, v in PPO_PARAMS.items() if k != "iterations"}
    ppo_params |= {"iteration": 3, "checkpoint_every": 0}
    with pytest.raises(ValueError, match=r"train_ppo: missing setting\(s\) \['iterations'\]"):
        ppo.main(
            [
                "--params",
                json.dumps(ppo_params),
                "--prompts",
                no,
                "--policy",
                no,
                "--model",
                no,
                "--metrics",
                no,
            ]
        )


def test_a_pairwise_method_setting_its_loss_does_not_read_is_refused():
    p = read(preference.Settings, PAIRWISE_PARAMS | {"method": "ipo", "tau": 0.1, "beta": 0.1}, "t")
    with pytest.raises(ValueError, match=r"ipo: setting\(s\) \['beta'\] are read by neither"):
        preference.check_settings(preference.resolve(preference.method("ipo").loss), p)
