"""One method's frontier in two studies that differ in one setting (LoRA against full fine-tuning,
a number format), read at equal KL, each policy's KL from its own study's pi_ref.

    python benchmarks/frontier_ab.py --a <study A> --b <study B> --method dpo \\
        --label-a full --label-b lora --json benchmarks/results/<name>.json

A study is a folder whose results/eval/ holds pi_ref's evaluation and the method's (a clean clone
after `snakemake ... results/table.csv`). Every point of the method (each swept value and point
along its runs, over its seeds) in B is read against A's frontier at the point's KL, and each of
A's against B's, with the comparison stage's reading (pipeline.frontiers.compare): the difference
in reward, with a 95% bootstrap interval over prompts (seeds, then prompts, with several seeds).
Both studies' evaluations use the same draws of the same prompt ids, so where they evaluated the
same prompts the interval is that of a paired difference. The verdict is the comparison's:
`no clear difference` where the interval holds 0, which is what "the frontier stays within the
intervals" means. Prints each reading and writes them, with each study's points, as JSON with
date, commit and machine.
"""

import argparse
from pathlib import Path
from types import SimpleNamespace

import record

from pipeline.config import Table, defaults_of
from pipeline.frontiers import compare, evaluated_points, method_series
from pipeline.methods import REFERENCE
from pipeline.stages.compare import describe

BOOTSTRAP = defaults_of(Table)  # the comparison stage's resamples and draws, as config.yaml's


def study_points(study: Path, method: str) -> list[dict]:
    """pi_ref's and the method's evaluated points in a study, with bootstrap replicates."""
    evals = study / "results" / "eval"
    folders = {REFERENCE: evals / REFERENCE} | {
        f.parent.relative_to(evals).as_posix(): f.parent
        for f in sorted((evals / method).rglob("summary.json"))
    }
    if len(folders) < 3:
        raise SystemExit(f"{evals}: pi_ref and at least two points of {method} are needed")
    points = evaluated_points(folders, BOOTSTRAP["bootstrap"], BOOTSTRAP["seed"])
    return [p for p in points if p["method"] == "pi_ref" or p["round"] == 1]


def plain(value):
    """A JSON value: NaN (pi_ref's value, round and point) as null, numpy's numbers as Python's."""
    if isinstance(value, str) or value is None:
        return value
    return None if value != value else float(value)


def summary(point: dict) -> dict:
    keys = ("method", "param", "value", "round", "at", "n_seeds", "sentiment", "kl")
    return {k: plain(point[k]) for k in keys}


def readings(points: list[dict], frontier: dict, label: str) -> list[dict]:
    rows = []
    for p in points:
        if p["method"] == "pi_ref":
            continue
        row = summary(p) | {k: plain(v) for k, v in compare(p, frontier | {"name": label}).items()}
        rows.append(row)
        print(describe(SimpleNamespace(**row)))
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--a", required=True, type=Path, help="study A (the baseline)")
    parser.add_argument("--b", required=True, type=Path, help="study B (the setting tried)")
    parser.add_argument("--method", required=True)
    parser.add_argument("--label-a", default="a")
    parser.add_argument("--label-b", default="b")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    points = {
        args.label_a: study_points(args.a, args.method),
        args.label_b: study_points(args.b, args.method),
    }
    frontiers = {}
    for label, pts in points.items():
        (frontiers[label],) = method_series(pts)  # round 1 only: study_points keeps no other
    result = record.provenance() | {
        "studies": {
            label: {"folder": str(study), "commit": record.commit(study)}
            for label, study in ((args.label_a, args.a), (args.label_b, args.b))
        },
        "method": args.method,
        "bootstrap": BOOTSTRAP,
        "points": {label: [summary(p) for p in pts] for label, pts in points.items()},
        f"{args.label_b}_against_{args.label_a}": readings(
            points[args.label_b], frontiers[args.label_a], args.label_a
        ),
        f"{args.label_a}_against_{args.label_b}": readings(
            points[args.label_a], frontiers[args.label_b], args.label_b
        ),
    }
    record.write(result, args.json)


if __name__ == "__main__":
    main()
