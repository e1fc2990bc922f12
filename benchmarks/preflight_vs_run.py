"""The preflight's projection next to what the study then took, rule by rule.

    python benchmarks/preflight_vs_run.py --study <folder> --snakemake-log <its .snakemake/log/...>
        [<the log of a later sitting> ...] [--paused START END ...] [--shared START END ...]
        --json benchmarks/results/<name>.json

Reads `<folder>/results/preflight.csv` (`snakemake preflight` with the study's config) and the
Snakemake log of the run that made the study, or one log per sitting of a study that was stopped
and taken up again (Snakemake reruns only what is missing): each job's start and end are the
timestamps Snakemake prints before its job block and before its "Finished jobid" line. A job a
sitting stopped is not counted: a stopped Snakemake prints no time, and the next sitting runs
the job again. Per rule: the jobs, their summed wall time against the preflight's projected total,
and the ratio; overall: the sittings' wall time (each from its first job's start to its last
job's end, summed) and the jobs' summed time against the projected study. Per
method (its trainers and the evaluations of its policies, read from the jobs' wildcards): the
measured time against the preflight's seconds per job for those jobs, so that one target's share
of a study (say the field's methods beside the main ones) has its own figure.

A study paused on purpose (SIGSTOP, so that something else ran alone) is corrected with
`--paused START END` ("2026-12-07 03:33:29", the log's local time): the pause is taken out of each
job it falls in and out of its sitting's wall time. A job that shared the machine with other work
(`--shared START END`, any overlap) is left out of the per-rule and per-method comparison and
listed apart; the wall time still holds it.
"""

import argparse
import datetime
import re
from pathlib import Path

import numpy as np
import pandas as pd
import record

from pipeline.methods import REFERENCE
from pipeline.paths import split_policy_id
from pipeline.stages.preflight import study_seconds


def job_times(log: Path) -> pd.DataFrame:
    """One row per finished job: rule, method (its `method` wildcard, or that of its `policy`
    wildcard; "" for a job of no one method), jobid, start and end (seconds since the epoch)."""
    stamp, started, rows, rule, jobid = None, {}, [], None, None
    for line in log.read_text().splitlines():
        if m := re.match(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$", line):
            stamp = datetime.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
        elif m := re.match(r"(?:local)?rule (\w+):$", line):
            rule = m.group(1)
        elif (m := re.match(r"\s+jobid: (\d+)$", line)) and rule:
            jobid = int(m.group(1))
            started[jobid] = {"rule": rule, "method": "", "jobid": jobid, "start": stamp}
            rule = None
        elif (m := re.match(r"\s+wildcards: (.*)$", line)) and jobid is not None:
            wildcards = dict(w.split("=", 1) for w in m.group(1).split(", "))
            policy = wildcards.get("policy", REFERENCE)  # pi_ref's evaluation is no method's
            started[jobid]["method"] = wildcards.get("method") or (
                "" if policy == REFERENCE else split_policy_id(policy).method
            )
        elif m := re.match(r"Finished jobid: (\d+) \(Rule: (\w+)\)", line):
            rows.append(started[int(m.group(1))] | {"end": stamp})
    return pd.DataFrame(rows)


def stamp(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").timestamp()


def overlap(start, end, windows: list[tuple[float, float]]):
    """Seconds of [start, end] inside the windows (each an (a, b) pair); works on Series too."""
    total = (end - start) * 0  # zeros shaped as the input, so that no windows still gives a Series
    for a, b in windows:
        total = total + (np.minimum(end, b) - np.maximum(start, a)).clip(0)
    return total


def priced(jobs: pd.DataFrame, projected: pd.DataFrame) -> pd.Series:
    """Each job's projected seconds: the preflight's seconds per job of its rule and method, or of
    its rule alone where it prices the rule's jobs alike (an evaluation); a rule it does not list
    (a table of one target, such as the leaderboard) costs a process's start."""
    per_job = projected.assign(method=projected["method"].fillna("")).set_index(["rule", "method"])[
        "seconds_per_job"
    ]
    cpu_start = projected.loc[projected["unit"] == "job", "seconds_start"].iloc[0]
    return jobs.apply(
        lambda j: per_job.get((j["rule"], j["method"]), per_job.get((j["rule"], ""), cpu_start)),
        axis=1,
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", required=True)
    parser.add_argument("--snakemake-log", required=True, nargs="+", help="one per sitting")
    parser.add_argument("--paused", nargs=2, action="append", default=[], metavar=("START", "END"))
    parser.add_argument("--shared", nargs=2, action="append", default=[], metavar=("START", "END"))
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    paused = [(stamp(a), stamp(b)) for a, b in args.paused]
    shared = [(stamp(a), stamp(b)) for a, b in args.shared]
    projected = pd.read_csv(Path(args.study) / "results/preflight.csv")
    sittings = [job_times(Path(log)) for log in args.snakemake_log]
    all_jobs = pd.concat(sittings, ignore_index=True)
    all_jobs["wall_s"] = all_jobs["end"] - all_jobs["start"]
    all_jobs["wall_s"] -= overlap(all_jobs["start"], all_jobs["end"], paused)
    contended = overlap(all_jobs["start"], all_jobs["end"], shared) > 0
    jobs = all_jobs[~contended]
    wall = sum(
        s["end"].max() - s["start"].min() - overlap(s["start"].min(), s["end"].max(), paused)
        for s in sittings
        if not s.empty
    )
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
    # per job: a rule whose jobs were not all counted (left out as shared, not run yet) compares
    table["ratio_per_job"] = (table["wall_s"] / table["jobs"]) / (
        table["projected_s"] / table["projected_jobs"]
    )
    result = record.provenance() | {
        "study": str(args.study),
        "study_commit": record.commit(Path(args.study)),  # the code that ran; "commit" measured it
        "device": projected["device"].iloc[0],
        "projected_study_s": round(study_seconds(projected, int(projected["cores"].iloc[0])), 1),
        "sittings": len(sittings),
        "paused": args.paused,
        "shared": args.shared,
        "left_out_shared": [
            {"rule": j.rule, "method": j.method, "wall_s": round(float(j.wall_s), 1)}
            for j in all_jobs[contended].itertuples()
        ],
        "measured_jobs_sum_s": round(float(measured["wall_s"].sum()), 1),
        "measured_wall_s": round(float(wall), 1),
        "rules": {
            rule: {k: (None if pd.isna(v) else round(float(v), 2)) for k, v in row.items()}
            for rule, row in table.iterrows()
        },
    }
    by_method = (
        jobs[jobs["method"] != ""]
        .assign(projected_s=priced(jobs, projected))
        .groupby("method")
        .agg(jobs=("jobid", "size"), wall_s=("wall_s", "sum"), projected_s=("projected_s", "sum"))
    )
    result["methods"] = {
        m: {k: round(float(v), 1) for k, v in row.items()} for m, row in by_method.iterrows()
    }
    result["ratio_wall"] = round(result["measured_wall_s"] / result["projected_study_s"], 2)
    result["ratio_jobs_sum"] = round(result["measured_jobs_sum_s"] / result["projected_study_s"], 2)
    counted = jobs[jobs["rule"] != "all"]
    result["ratio_counted_jobs"] = round(
        float(counted["wall_s"].sum() / priced(counted, projected).sum()), 2
    )
    print(table.round(2).to_string())
    print(by_method.round(1).to_string())
    print(
        f"projected {result['projected_study_s']:.0f} s; measured wall "
        f"{result['measured_wall_s']:.0f} s in {len(sittings)} sitting(s)"
        f" (x{result['ratio_wall']}), jobs summed {result['measured_jobs_sum_s']:.0f} s"
        f" (x{result['ratio_jobs_sum']}); the counted jobs against their own projection"
        f" x{result['ratio_counted_jobs']}"
    )
    record.write(result, args.json)


if __name__ == "__main__":
    main()
