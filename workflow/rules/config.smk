# The config, validated before any other line reads it: the methods of `train.extensions` are
# registered first, then the schema (built from the sections' records in pipeline/config.py and
# the method records) checks types, ranges and unknown keys and fills defaults, then the checks a
# schema cannot express. Every failure is one line naming the key.
import copy
import importlib.util
from pathlib import Path

import jsonschema
from snakemake.exceptions import WorkflowError

from pipeline.methods import (EXTENSION_OF, METHODS, RANKED_PAIRS, RANKINGS, filled_schema,
                              load_extensions)
from pipeline.sources import (check_context, context_length, gguf_path, is_gguf, model_config,
                              model_folder)

def config_schema() -> dict:
    try:
        return filled_schema()
    except ValueError as err:
        raise WorkflowError(str(err))


def filling_defaults(validator_class):
    """A validator that also sets each missing key to its schema default, as Snakemake's does."""
    properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, props, instance, schema):
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def schema_error(config, schema) -> str | None:
    """One line naming the offending key, or None when the config is valid."""
    validator = jsonschema.validators.validator_for(schema)
    error = jsonschema.exceptions.best_match(validator(schema).iter_errors(config))
    if error is None:
        return None
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema["properties"]))
        return f"config: unknown key(s) {unknown} under {key}; allowed: {sorted(error.schema['properties'])}"
    path = list(error.absolute_path)
    if error.validator == "enum" and path[:1] == ["train"] and path[1] in ("methods", "full_methods"):
        return (f"config key {key}: unknown method {error.instance!r}; known: "
                f"{', '.join(error.schema['enum'])}")
    if error.validator == "enum" and path[:2] == ["iterative", "methods"]:
        return (f"config key {key}: {error.instance!r} is not a method that trains on preference"
                f" data, which rounds need; those are: {', '.join(error.schema['enum'])}")
    return f"config key {key}: {error.message}"


def check_config(config):
    """Schema first (types, unknown keys, ranges; fills defaults), then what a schema cannot say."""
    extensions = config.get("train", {}).get("extensions", [])
    if not (isinstance(extensions, list) and all(isinstance(e, str) for e in extensions)):
        raise WorkflowError("config key train.extensions: a list of Python files or modules")
    load_extensions(extensions)
    schema = config_schema()
    message = schema_error(config, schema)
    if message:
        raise WorkflowError(message)
    filling_defaults(jsonschema.validators.validator_for(schema))(schema).validate(config)
    p, s, pol = config["prompts"], config["sample"], config["policy"]
    if p["min_tokens"] > p["max_tokens"]:
        raise WorkflowError(
            f"config: prompts.min_tokens ({p['min_tokens']}) > prompts.max_tokens ({p['max_tokens']})"
        )
    lengths = [("sft.max_length", config["sft"]["max_length"]),
               ("prompts.max_tokens + sample.max_new_tokens", p["max_tokens"] + s["max_new_tokens"])]
    if pol["init"] == "scratch":
        if pol["lora"] is not None:
            raise WorkflowError("config: policy.lora adapts a pretrained policy, and policy.init is"
                                " scratch: set policy.lora to null or policy.init to a model")
        check_context(pol["n_positions"], "policy.n_positions", lengths)
        if pol["n_embd"] % pol["n_head"]:
            raise WorkflowError(
                f"config: policy.n_embd ({pol['n_embd']}) is not a multiple of policy.n_head ({pol['n_head']})"
            )
    if config["ppo"]["minibatch_size"] > config["ppo"]["rollout_size"]:
        raise WorkflowError(f"config: ppo.minibatch_size ({config['ppo']['minibatch_size']}) exceeds"
                            f" ppo.rollout_size ({config['ppo']['rollout_size']})")
    if config["reward"]["backend"] == "hf" and not config["reward"]["model"]:
        raise WorkflowError("config: reward.model is required when reward.backend is 'hf'")
    if config["evaluate"]["n_prompts"] > config["data"]["n_eval_prompts"]:
        raise WorkflowError(
            f"config: evaluate.n_prompts ({config['evaluate']['n_prompts']}) exceeds "
            f"data.n_eval_prompts ({config['data']['n_eval_prompts']})"
        )
    if config["side_by_side"]["prompts"] > config["evaluate"]["n_prompts"]:
        raise WorkflowError(
            f"config: side_by_side.prompts ({config['side_by_side']['prompts']}) exceeds "
            f"evaluate.n_prompts ({config['evaluate']['n_prompts']})"
        )
    if config["data"]["source"] != "embedded" and not config["data"]["path"]:
        raise WorkflowError(f"config: data.path is required when data.source is '{config['data']['source']}'")
    full = list(dict.fromkeys(config["train"]["methods"] + config["train"]["full_methods"]))
    if config["iterative"]["methods"] is None:  # follows train.methods unless set
        config["iterative"]["methods"] = [m for m in config["train"]["methods"]
                                          if METHODS[m].iterable]
    for name in config["iterative"]["methods"]:
        if name not in full:
            raise WorkflowError(f"config: iterative.methods has '{name}', which is in neither "
                                "train.methods nor train.full_methods")
    for name in full:
        record = METHODS[name]
        if record.trainer == "online":
            group, key = ((record.group_size, f"{name}'s group of {record.group_size}")
                          if record.group_size else (s["n_per_prompt"], "sample.n_per_prompt"))
            if group < 2 or config["ppo"]["rollout_size"] % group:
                raise WorkflowError(f"config: {name} samples groups of {key} ({group}) per"
                                    f" prompt: at least 2, dividing ppo.rollout_size"
                                    f" ({config['ppo']['rollout_size']})")
        if record.data in (RANKINGS, RANKED_PAIRS) and s["n_per_prompt"] < 3:
            raise WorkflowError(f"config: {name} trains on rankings of each prompt's samples, which"
                                f" need sample.n_per_prompt >= 3 (it is {s['n_per_prompt']}); take"
                                " it out of train.methods and train.full_methods, or raise it")
    check_data_parallel(config, full)
    check_sources(config, lengths)


def check_data_parallel(config, methods):
    """Each process of a data-parallel job (SFT and the trainers torchrun launches) takes an equal
    share of every global batch: the batches must split into resources.data_parallel parts."""
    n = config["resources"]["data_parallel"]
    if n == 1:
        return
    keys = ["sft.batch_size"]
    for name in methods:
        record = METHODS[name]
        if record.trainer == "preference":
            keys.append(f"{record.settings}.batch_size")
        elif record.trainer == "ppo":
            keys += ["ppo.rollout_size", "ppo.minibatch_size"]
    for key in dict.fromkeys(keys):
        section, field = key.split(".")
        if config[section][field] % n:
            raise WorkflowError(f"config: {key} ({config[section][field]}) is not a multiple of"
                                f" resources.data_parallel ({n}), the processes that share it")


def check_sources(config, lengths):
    """What the config names on disk or in installed packages, after every value is checked (a
    wrong value is named before a missing file or package)."""
    pol = config["policy"]
    if config["data"]["source"] == "file" and not Path(config["data"]["path"]).expanduser().is_file():
        raise WorkflowError(f"config: data.path '{config['data']['path']}' (data.source file) does not exist")
    if is_gguf(pol["init"]):
        gguf_path(pol["init"], "policy.init")
    elif pol["init"] != "scratch":
        model_folder(pol["init"], "policy.init")
        # a hub id not yet downloaded is checked when the SFT stage reads its config
        pretrained = model_config(pol["init"])
        if pretrained is not None:
            check_context(context_length(pretrained), f"the n_positions of policy.init '{pol['init']}'",
                          lengths)
    if config["reward"]["backend"] == "hf":
        model_folder(config["reward"]["model"], "reward.model")
    if pol["lora"] is not None and importlib.util.find_spec("peft") is None:
        raise WorkflowError("config: policy.lora needs the `peft` package, which is not installed"
                            " (pip install -e '.[lora]')")
    tracker = config["train"]["tracking"]
    if tracker != "none" and importlib.util.find_spec(tracker) is None:
        raise WorkflowError(f"config: train.tracking = '{tracker}' needs the `{tracker}` package,"
                            f" which is not installed (pip install {tracker})")


try:
    check_config(config)
except FileNotFoundError as err:
    raise WorkflowError(f"config: {err}")
except ValueError as err:
    raise WorkflowError(str(err))
