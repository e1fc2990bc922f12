"""Two runs of the main job, one per commit, compared artifact by artifact.

    git clone . /tmp/before && git -C /tmp/before checkout <commit>   # and /tmp/after likewise
    (cd /tmp/before && HF_HUB_OFFLINE=1 snakemake --cores 2 results/table.csv)  # and in /tmp/after
    python benchmarks/same_outputs.py --before /tmp/before --after /tmp/after \\
        --json benchmarks/results/<name>.json

Each clone runs its own code (`python -m pipeline.<stage>` finds the clone's `pipeline/` first, as
the jobs run in the clone). Compares results/table.csv and every Parquet table, model weight file
and evaluation summary by their bytes, and every trainer's metrics.csv by its values apart from
the timing column `seconds` (and SFT's `step`, which counts steps taken in both: after them since
the trainers share one loop, before them until then).
"""

import argparse
import hashlib
from pathlib import Path

import pandas as pd
import record

PATTERNS = [
    "results/table.csv",
    "results/**/*.parquet",
    "results/**/model.safetensors",
    "results/**/summary.json",
]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    before, after = Path(args.before), Path(args.after)
    files = sorted({p.relative_to(before) for pattern in PATTERNS for p in before.glob(pattern)})
    differ = [
        str(f) for f in files if not (after / f).is_file() or md5(before / f) != md5(after / f)
    ]
    metrics = {}
    for f in sorted(before.glob("results/**/metrics.csv")):
        rel = f.relative_to(before)
        a = pd.read_csv(f).drop(columns="seconds")
        b = pd.read_csv(after / rel).drop(columns="seconds")
        if rel.parts[1] == "sft" and a["step"].add(1).equals(b["step"]):
            a, b = a.drop(columns="step"), b.drop(columns="step")
        metrics[str(rel)] = bool(list(a.columns) == list(b.columns) and a.equals(b))
    commit = {side: record.commit(Path(side)) for side in (args.before, args.after)}
    result = record.provenance() | {
        "before": commit[args.before],
        "after": commit[args.after],
        "table_md5": {
            "before": md5(before / "results/table.csv"),
            "after": md5(after / "results/table.csv"),
        },
        "files_compared": len(files),
        "files_differing": differ,
        "metrics_equal_apart_from_timing": metrics,
    }
    print(f"{len(files)} files, {len(differ)} differ; metrics equal: {all(metrics.values())}")
    record.write(result, args.json)


if __name__ == "__main__":
    main()
