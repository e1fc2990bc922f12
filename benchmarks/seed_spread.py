"""The run-to-run spread of a study over its training seeds, recorded as JSON with date, commit
and machine: per frontier point (method, swept value and point along the run), the mean and range
over seeds of the policy rows' sentiment and KL, the aggregate row with its interval (seeds, then
prompts), and the study's matched-KL comparison and optimal frontier.

    # seeds.yaml: train.seeds: [0, 1, 2]
    snakemake --cores 8 --configfile seeds.yaml results/table.csv results/comparison.csv
    python benchmarks/seed_spread.py --study . --commit <sha> --wall-s <seconds> \\
        --command "<the snakemake command>" --json benchmarks/results/<name>.json
"""

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

import pandas as pd

from pipeline.evaluations import POINT


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "load_average_1_5_15": os.getloadavg(),
    }


def spread(table: pd.DataFrame) -> list[dict]:
    """Per frontier point (a run's value and, where the study evaluates points along its runs,
    the fraction of its steps), the policy rows of its seeds beside their aggregate row."""
    keys = [k for k in POINT if k in table]
    policies = table[(table["kind"] == "policy") & (table["method"] != "pi_ref")]
    aggregates = table[table["kind"] == "aggregate"]
    rows = []
    for point, runs in policies.groupby(keys, sort=False, dropna=False):
        agg = aggregates.merge(pd.DataFrame([point], columns=keys), on=keys).iloc[0]
        rows.append(
            {
                "method": agg["method"],
                "param": agg["param"],
                "value": agg["value"],
                "round": int(agg["round"]),
                **({} if pd.isna(agg.get("at")) else {"at": float(agg["at"])}),
                "seeds": runs["seed"].astype(int).tolist(),
                **{f"{col}_per_seed": runs[col].round(4).tolist() for col in ("sentiment", "kl")},
                **{
                    f"{col}_{stat}": round(float(getattr(runs[col], stat)()), 4)
                    for col in ("sentiment", "kl")
                    for stat in ("mean", "min", "max")
                },
                "aggregate": {
                    k: round(float(agg[k]), 4)
                    for k in ("sentiment", "sentiment_lo", "sentiment_hi", "kl", "kl_lo", "kl_hi")
                }
                | {"ci_over": agg["ci_over"]},
                "seed0_prompts_only_ci": [
                    round(float(runs[c].iloc[0]), 4) for c in ("sentiment_lo", "sentiment_hi")
                ],
            }
        )
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", default=".", help="the folder holding results/")
    parser.add_argument("--commit", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--wall-s", type=float, required=True)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    results = Path(args.study) / "results"
    table = pd.read_csv(results / "table.csv")
    ref = table[(table["kind"] == "policy") & (table["method"] == "pi_ref")].iloc[0]
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": args.commit,
        "machine": machine(),
        "command": args.command,
        "wall_s": args.wall_s,
        "pi_ref": {"sentiment": round(float(ref["sentiment"]), 4)},
        "spread": spread(table),
    }
    if (results / "comparison.csv").exists():
        out["comparison"] = json.loads(
            pd.read_csv(results / "comparison.csv").round(4).to_json(orient="records")
        )
    if (results / "optimal.csv").exists():
        out["optimal"] = json.loads(
            pd.read_csv(results / "optimal.csv")[
                [
                    "value",
                    "sentiment",
                    "sentiment_lo",
                    "sentiment_hi",
                    "kl",
                    "kl_reverse",
                    "ess",
                    "pool_size",
                ]
            ]
            .round(4)
            .to_json(orient="records")
        )
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["spread"], indent=1))


if __name__ == "__main__":
    main()
