"""How long each stage takes to start: `python -m pipeline.<stage> --help` (the interpreter, the
stage's module-level imports, its argument parser), and which heavy packages it imports.

    python benchmarks/stage_start.py --json benchmarks/results/stage-start.json [--repeats 5]
        [--repo CHECKOUT]    # another checkout's stages, e.g. a clone at an older commit

Runs are interleaved (every stage once, then again, ...) so that a change in the machine's load
hits all stages alike; the median per stage is reported, of the wall time and of the CPU time
(user + system, which another engineer's load inflates much less). One more run per stage under
`python -X importtime` gives the cumulative import time of torch, transformers, pandas, ...
"""

import argparse
import re
import resource
import statistics
import subprocess
import sys
import time

import record

STAGES = [
    "data",
    "tokenizer",
    "prompts",
    "sft",
    "sample",
    "score",
    "pairs",
    "reference",
    "preference",
    "ppo",
    "evaluate",
    "table",
    "plots",
]
HEAVY = [
    "torch",
    "transformers",
    "pandas",
    "numpy",
    "matplotlib",
    "tokenizers",
    "datasets",
    "vaderSentiment",
    "safetensors",
    "scipy",
]


def start(stage: str, env: dict, *flags: str) -> subprocess.CompletedProcess:
    # in the checkout: `-m` puts the working directory first on sys.path, before PYTHONPATH
    return subprocess.run(
        [sys.executable, *flags, "-m", f"pipeline.stages.{stage}", "--help"],
        env=env,
        cwd=env["PYTHONPATH"],
        capture_output=True,
        text=True,
        check=True,
    )


def heavy_imports(stage: str, env: dict) -> dict:
    """Seconds of cumulative import time of each heavy top-level package the stage imports."""
    out = {}
    for line in start(stage, env, "-X", "importtime").stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)$", line)
        if m and m.group(3) in HEAVY and m.group(3) not in out:
            out[m.group(3)] = round(int(m.group(1)) / 1e6, 3)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--repo", default=str(record.ROOT), help="the checkout whose stages to start")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    info = record.provenance() | {"measured_commit": record.commit(args.repo)}
    env = record.ENVIRON | {"PYTHONPATH": args.repo, "HF_HUB_OFFLINE": "1"}
    stages = args.stages.split(",")
    walls, cpus = {s: [] for s in stages}, {s: [] for s in stages}
    for _ in range(args.repeats):
        for s in stages:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            start(s, env)
            walls[s].append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus[s].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    result = info | {"repeats": args.repeats, "stages": {}}
    print(
        f"{'stage':11s} {'median_s':>8s} {'min_s':>6s} {'cpu_s':>6s}  heavy imports"
        " (cumulative s, one -X importtime run)"
    )
    for s in stages:
        imports = heavy_imports(s, env)
        result["stages"][s] = {
            "median_s": round(statistics.median(walls[s]), 3),
            "min_s": round(min(walls[s]), 3),
            "cpu_median_s": round(statistics.median(cpus[s]), 3),
            "runs_s": [round(w, 3) for w in walls[s]],
            "imports_s": imports,
        }
        print(
            f"{s:11s} {statistics.median(walls[s]):8.2f} {min(walls[s]):6.2f} "
            f"{statistics.median(cpus[s]):6.2f}  "
            + ", ".join(f"{k} {v:.2f}" for k, v in imports.items())
        )
    total = sum(r["median_s"] for r in result["stages"].values())
    cpu = sum(r["cpu_median_s"] for r in result["stages"].values())
    result["sum_of_medians_s"], result["sum_of_cpu_medians_s"] = round(total, 2), round(cpu, 2)
    print(f"sum of medians: wall {total:.1f} s, CPU {cpu:.1f} s; {info['uptime_before']}")
    if args.json:
        record.write(result, args.json)


if __name__ == "__main__":
    main()
