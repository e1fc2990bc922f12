"""Artifacts appear whole or not at all: each is written beside its target, then renamed."""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from pipeline.artifacts import broken


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path (file or folder) that replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp = staging / path.name
    try:
        yield tmp
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_parquet(df: pd.DataFrame, path) -> None:
    with atomic_output(path) as tmp:
        df.to_parquet(tmp, index=False)


# the study's tables' numbers: six significant digits, more than any of their intervals resolves
SIX_DIGITS = "%.6g"


def write_csv(df: pd.DataFrame, path, integers=(), float_format=None) -> None:
    """`df` as CSV, the columns `integers` written as integers (blank where missing)."""
    df = df.astype({c: "Int64" for c in integers})
    with atomic_output(path) as tmp:
        df.to_csv(tmp, index=False, float_format=float_format)


def write_json(obj, path) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_parquet(path, columns: list[str]) -> pd.DataFrame:
    """Read a stage's table and fail with the file's name if it does not load or a column it
    needs is missing."""
    try:
        df = pd.read_parquet(path)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - pyarrow's errors name no common base
        raise broken(Path(path), err) from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    return df
