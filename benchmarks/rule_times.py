"""Where the main job's wall time goes: every job's start, end, start-up (Python, imports) and CPU
time, from a clean clone of this repository run in a scratch folder.

    python benchmarks/rule_times.py --json benchmarks/results/main-job.json [--cores 8]

Runs `snakemake --cores N results/table.csv` on the embedded default in a fresh `git clone` of
HEAD or `--commit` (so uncommitted edits are not measured), with a `sitecustomize` module put first
on PYTHONPATH that every Python process the job starts imports: it records the process's start
(from /proc, so interpreter start-up counts), the moment its stage first parses its arguments
(every stage's main() begins with pipeline.cli.parse, after its module-level imports), its exit
and its CPU time. No rule file is edited. Jobs are named by their stderr, which each rule sends
to its log file, looked up in the job blocks of Snakemake's own log. Prints and writes per job
and per rule: wall, start-up, work, CPU; the main job's wall time, Snakemake's own start before
the first job, and how many of the machine's cores the jobs kept busy.
"""

import argparse
import json
import re
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from record import ENVIRON, ROOT, commit, provenance, write

# Imported by every Python process started with this folder on PYTHONPATH; appends one JSON line
# to $RULE_TIMES_LOG at exit. Kept to the standard library's cheapest modules.
HOOK = r'''
import atexit, json, os, sys, time

def _start():
    """This process's start on the wall clock: now less its age (/proc, 10 ms ticks)."""
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    return time.time() - (up - ticks / os.sysconf("SC_CLK_TCK"))

def _stderr():
    try:  # each rule sends its stage's stderr to the rule's log file
        return os.path.relpath(os.readlink("/proc/self/fd/2"))
    except OSError:
        return None

_record = {"start": _start(), "pid": os.getpid(), "ready": None, "log": _stderr()}

import argparse
_parse = argparse.ArgumentParser.parse_args

def _parse_args(self, *args, **kwargs):
    if _record["ready"] is None:
        _record["ready"] = time.time()
    return _parse(self, *args, **kwargs)

argparse.ArgumentParser.parse_args = _parse_args

@atexit.register
def _done():
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    t = os.times()
    _record.update(end=time.time(), argv=sys.argv, module=spec.name if spec else None,
                   cpu_s=t.user + t.system)
    with open(os.environ["RULE_TIMES_LOG"], "a") as f:
        f.write(json.dumps(_record) + "\n")
'''


def job_logs(snakemake_log: Path) -> dict:
    """log path -> (rule, jobid, threads, first output), from the job blocks of Snakemake's log."""
    jobs, block = {}, None
    for line in snakemake_log.read_text().splitlines() + [""]:
        if block is not None and not line.startswith(" "):  # a block's fields are indented
            if block["log"]:  # the target rule `all` runs nothing and has no log
                jobs[block["log"]] = (
                    block["rule"],
                    block["jobid"],
                    block["threads"],
                    block["outputs"][0],
                )
            block = None
        if m := re.match(r"(?:local)?rule (\w+):$", line):
            block = {"rule": m.group(1), "outputs": [], "threads": 1, "jobid": None, "log": None}
        elif block is None:
            continue
        elif m := re.match(r"\s+output: (.*)", line):
            block["outputs"] = [o.strip() for o in m.group(1).split(",")]
        elif m := re.match(r"\s+log: (.*)", line):
            block["log"] = m.group(1).strip()
        elif m := re.match(r"\s+threads: (\d+)", line):
            block["threads"] = int(m.group(1))
        elif m := re.match(r"\s+jobid: (\d+)", line):
            block["jobid"] = int(m.group(1))
    return jobs


def busy_cores(jobs: list[dict], t0: float, t1: float, step: float = 0.1) -> dict:
    """Seconds of the main job's wall time during which 0, 1, 2, ... jobs ran."""
    counts = defaultdict(float)
    t = t0
    while t < t1:
        n = sum(j["start"] <= t < j["end"] for j in jobs)
        counts[n] += step
        t += step
    return {str(k): round(v, 1) for k, v in sorted(counts.items())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=8, help="snakemake --cores")
    ap.add_argument("--target", default="results/table.csv")
    ap.add_argument(
        "--configfile",
        default=None,
        help="instead of the embedded default (e.g. tests/configs/micro.yaml)",
    )
    ap.add_argument(
        "--scratch",
        default=None,
        help="clone into this (new) folder and keep it; default: a temporary one",
    )
    ap.add_argument("--commit", default="HEAD", help="the commit to clone (default HEAD)")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    info = provenance()
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="rule_times."))
    subprocess.run(["git", "clone", "-q", str(ROOT), str(scratch)], check=True)
    subprocess.run(["git", "checkout", "-q", args.commit], cwd=scratch, check=True)
    hook_dir = Path(tempfile.mkdtemp(prefix="rule_times_hook."))
    (hook_dir / "sitecustomize.py").write_text(HOOK)
    timings = hook_dir / "processes.jsonl"
    env = ENVIRON | {
        "PYTHONPATH": f"{hook_dir}:{scratch}",
        "HF_HUB_OFFLINE": "1",
        "RULE_TIMES_LOG": str(timings),
    }
    command = ["snakemake", "--cores", str(args.cores), args.target]
    if args.configfile:
        command += ["--configfile", args.configfile]
    print(f"{' '.join(command)} in {scratch} (commit {commit(scratch)}); {info['uptime_before']}")
    t0 = time.time()
    with open(hook_dir / "snakemake.out", "w") as out:
        done = subprocess.run(command, cwd=scratch, env=env, stdout=out, stderr=subprocess.STDOUT)
    t1 = time.time()
    if done.returncode:
        raise SystemExit(f"snakemake failed; its output: {hook_dir / 'snakemake.out'}")

    [log] = sorted((scratch / ".snakemake" / "log").glob("*.snakemake.log"))
    logs = job_logs(log)
    jobs = []
    for line in timings.read_text().splitlines():
        rec = json.loads(line)
        if rec["log"] not in logs or not (rec["module"] or "").startswith("pipeline."):
            continue
        rule, jobid, threads, output = logs[rec["log"]]
        ready = rec["ready"] or rec["end"]
        jobs.append(
            {
                "rule": rule,
                "jobid": jobid,
                "output": output,
                "module": rec["module"],
                "threads": threads,
                "start": rec["start"],
                "end": rec["end"],
                "offset_s": round(rec["start"] - t0, 2),
                "wall_s": round(rec["end"] - rec["start"], 2),
                "startup_s": round(ready - rec["start"], 2),
                "work_s": round(rec["end"] - ready, 2),
                "cpu_s": round(rec["cpu_s"], 2),
            }
        )
    jobs.sort(key=lambda j: j["start"])
    expected = len(logs)
    if len(jobs) != expected:
        raise SystemExit(f"timed {len(jobs)} jobs of the {expected} in {log}")

    rules = defaultdict(lambda: {"jobs": 0, "wall_s": 0.0, "startup_s": 0.0, "cpu_s": 0.0})
    for j in jobs:
        r = rules[j["rule"]]
        r["jobs"] += 1
        for k in ("wall_s", "startup_s", "cpu_s"):
            r[k] = round(r[k] + j[k], 2)
    wall = t1 - t0
    cores = info["machine"]["cores"]
    cpu = sum(j["cpu_s"] for j in jobs)
    result = info | {
        "commit": commit(scratch),
        "benchmark_commit": info["commit"],
        "command": " ".join(command),
        "target": args.target,
        "cores_flag": args.cores,
        "wall_s": round(wall, 1),
        "snakemake_start_s": round(jobs[0]["start"] - t0, 2),
        "after_last_job_s": round(t1 - max(j["end"] for j in jobs), 2),
        "jobs_wall_sum_s": round(sum(j["wall_s"] for j in jobs), 1),
        "jobs_startup_sum_s": round(sum(j["startup_s"] for j in jobs), 1),
        "jobs_cpu_s": round(cpu, 1),
        "core_utilisation": round(cpu / (wall * cores), 3),
        "seconds_with_n_jobs_running": busy_cores(jobs, t0, t1),
        "rules": dict(sorted(rules.items(), key=lambda kv: -kv[1]["wall_s"])),
        "jobs": [{k: v for k, v in j.items() if k not in ("start", "end")} for j in jobs],
    }
    print(
        f"wall {wall:.1f} s; Snakemake's start {result['snakemake_start_s']:.1f} s; jobs: wall "
        f"{result['jobs_wall_sum_s']:.1f} s summed, of it start-up"
        f" {result['jobs_startup_sum_s']:.1f} s;"
        f" CPU {cpu:.1f} s = {100 * result['core_utilisation']:.0f}% of {cores} cores"
    )
    print(f"{'rule':16s} {'jobs':>4s} {'wall_s':>8s} {'startup_s':>9s} {'cpu_s':>8s}")
    for name, r in result["rules"].items():
        print(
            f"{name:16s} {r['jobs']:4d} {r['wall_s']:8.1f} {r['startup_s']:9.1f} {r['cpu_s']:8.1f}"
        )
    print(f"{'offset_s':>8s} {'wall_s':>7s} {'startup':>7s} {'cpu_s':>7s}  job")
    for j in jobs:
        print(
            f"{j['offset_s']:8.1f} {j['wall_s']:7.1f} {j['startup_s']:7.1f} {j['cpu_s']:7.1f}"
            f"  {j['rule']} -> {j['output']}"
        )
    write(result, args.json)


if __name__ == "__main__":
    main()
