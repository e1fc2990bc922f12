"""The preflight's projection next to what the study then took, rule by rule.

    python benchmarks/preflight_vs_run.py --study <folder> --snakemake-log <its .snakemake/log/...>
        --json benchmarks/results/<name>.json

Reads `<folder>/results/preflight.csv` (`snakemake preflight` with the study's config) and the
Snakemake log of the run that made the study: each job's start and end are the timestamps
Snakemake prints before its job block and before its "Finished jobid" line. Per rule: the jobs,
their summed wall time against the preflight's projected total, and the ratio; overall: the run's
wall time (first start to last end) and its summed job time against the projected study.
"""

import argparse
import datetime
import re
from pathlib import Path

import pandas as pd
import record

from pipeline.preflight import study_seconds


def job_times(log: Path) -> pd.DataFrame:
    """One row per job: rule, jobid, start and end (seconds since the epoch)."""
    stamp, started, rows, rule = None, {}, [], None
    for line in log.read_text().splitlines():
        if m := re.match(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$", line):
            stamp = datetime.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
        elif m := re.match(r"(?:local)?rule (\w+):$", line):
            rule = m.group(1)
        elif (m := re.match(r"\s+jobid: (\d+)$", line)) and rule:
            started[int(m.group(1))] = (rule, stamp)
            rule = None
        elif m := re.match(r"Finished jobid: (\d+) \(Rule: (\w+)\)", line):
            name, start = started[int(m.group(1))]
            rows.append({"rule": name, "jobid": int(m.group(1)), "start": start, "end": stamp})
    return pd.DataFrame(rows)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", required=True)
    parser.add_argument("--snakemake-log", required=True)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    projected = pd.read_csv(Path(args.study) / "results/preflight.csv")
    jobs = job_times(Path(args.snakemake_log))
    jobs["wall_s"] = jobs["end"] - jobs["start"]
    measured = (
        jobs[jobs["rule"] != "all"]
        .groupby("rule")
        .agg(jobs=("jobid", "size"), wall_s=("wall_s", "sum"))
    )
    per_rule = projected.groupby("rule").agg(
        projected_jobs=("jobs", "sum"), projected_s=("seconds_total", "sum")
    )
    table = per_rule.join(measured, how="outer")
    table["ratio"] = table["wall_s"] / table["projected_s"]
    result = record.provenance() | {
        "study": str(args.study),
        "device": projected["device"].iloc[0],
        "projected_study_s": round(study_seconds(projected, int(projected["cores"].iloc[0])), 1),
        "measured_jobs_sum_s": round(float(measured["wall_s"].sum()), 1),
        "measured_wall_s": round(float(jobs["end"].max() - jobs["start"].min()), 1),
        "rules": {
            rule: {k: (None if pd.isna(v) else round(float(v), 2)) for k, v in row.items()}
            for rule, row in table.iterrows()
        },
    }
    result["ratio_wall"] = round(result["measured_wall_s"] / result["projected_study_s"], 2)
    result["ratio_jobs_sum"] = round(result["measured_jobs_sum_s"] / result["projected_study_s"], 2)
    print(table.round(2).to_string())
    print(
        f"projected {result['projected_study_s']:.0f} s; measured wall "
        f"{result['measured_wall_s']:.0f} s (x{result['ratio_wall']}), jobs summed "
        f"{result['measured_jobs_sum_s']:.0f} s (x{result['ratio_jobs_sum']})"
    )
    record.write(result, args.json)


if __name__ == "__main__":
    main()
