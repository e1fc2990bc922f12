"""Stage `table`: results/table.csv, one row per policy and one per (method, value, round) over
seeds.

Columns: kind (policy | aggregate), method (pi_ref or a key of pipeline.methods.SWEPT), param and
value (the swept hyperparameter), seed (empty on aggregate rows), round (1, or the training round
of an iterated method; empty for pi_ref), n (samples), n_seeds, sentiment and
kl (means) each with the bounds of a 95% percentile bootstrap interval (sentiment_lo/hi,
kl_lo/hi; prompts are resampled, a prompt's samples stay together), kl_k1 (log-ratio estimate
on the same samples), kl_reverse (exact KL(pi_ref || pi) on pi_ref's samples), length (mean
response tokens), distinct_2.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import cli, io
from pipeline.logs import get_logger
from pipeline.methods import SWEPT, parse_policy_id

log = get_logger("table")

COLUMNS = ["kind", "method", "param", "value", "seed", "round", "n", "n_seeds", "sentiment",
           "sentiment_lo", "sentiment_hi", "kl", "kl_lo", "kl_hi", "kl_k1", "kl_reverse", "length",
           "distinct_2"]


def bootstrap_ci(samples: pd.DataFrame, column: str, n_boot: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling prompts (cluster bootstrap)."""
    per_prompt = samples.groupby("prompt_id")[column].agg(["sum", "count"]).to_numpy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_prompt), size=(n_boot, len(per_prompt)))
    means = per_prompt[idx, 0].sum(1) / per_prompt[idx, 1].sum(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def summarise(samples: pd.DataFrame, reverse: pd.DataFrame, distinct: float, n_boot: int,
              seed: int) -> dict:
    s_lo, s_hi = bootstrap_ci(samples, "score", n_boot, seed)
    k_lo, k_hi = bootstrap_ci(samples, "kl", n_boot, seed)
    return {"n": len(samples), "sentiment": samples["score"].mean(), "sentiment_lo": s_lo,
            "sentiment_hi": s_hi, "kl": samples["kl"].mean(), "kl_lo": k_lo, "kl_hi": k_hi,
            "kl_k1": samples["kl_k1"].mean(), "kl_reverse": reverse["kl_reverse"].mean(),
            "length": samples["length"].mean(), "distinct_2": distinct}


def build_table(eval_dir: Path, policies: list[str], n_boot: int, seed: int) -> pd.DataFrame:
    rows, groups = [], {}
    for pid in policies:
        folder = eval_dir / pid
        samples = io.read_parquet(folder / "samples.parquet", ["prompt_id", "score", "kl", "kl_k1",
                                                                "length"])
        reverse = io.read_parquet(folder / "reverse_kl.parquet", ["kl_reverse"])
        summary = json.loads((folder / "summary.json").read_text())
        meta = parse_policy_id(pid)
        rows.append({"kind": "policy", **meta, "n_seeds": 1,
                     **summarise(samples, reverse, summary["distinct_2"], n_boot, seed)})
        if meta["method"] != "pi_ref":
            key = (meta["method"], meta["param"], meta["value"], meta["round"])
            groups.setdefault(key, []).append((samples, reverse, summary["distinct_2"]))
    for (method, param, value, rnd), members in groups.items():
        samples = pd.concat([m[0] for m in members])
        reverse = pd.concat([m[1] for m in members])
        distinct = float(np.mean([m[2] for m in members]))
        rows.append({"kind": "aggregate", "method": method, "param": param, "value": value,
                     "seed": float("nan"), "round": rnd, "n_seeds": len(members),
                     **summarise(samples, reverse, distinct, n_boot, seed)})
    table = pd.DataFrame(rows, columns=COLUMNS)
    order = {m: i for i, m in enumerate(["pi_ref", *SWEPT])}
    table = table.sort_values(["kind", "method", "value", "round", "seed"],
                              key=lambda c: c.map(order) if c.name == "method" else c,
                              ascending=[False, True, True, True, True], kind="stable")
    return table.reset_index(drop=True)


def main(argv=None):
    parser_args = cli.parse(__doc__, ["eval_dir"], ["out"], argv)
    p = parser_args.params
    table = build_table(Path(parser_args.eval_dir), p["policies"], p["bootstrap"], p["seed"])
    table[["seed", "round"]] = table[["seed", "round"]].astype("Int64")
    with io.atomic_output(parser_args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    log.info("\n%s", table[["kind", "method", "value", "seed", "round", "sentiment", "kl"]].to_string())


if __name__ == "__main__":
    cli.run(main)
