"""How long `.ci/run` (the README's test command, the real-SLURM test opted in) takes from a
clean clone, and where the time goes (pytest's 25 slowest).

    python benchmarks/suite_time.py --json benchmarks/results/test-suite.json
    python benchmarks/suite_time.py --log run.log --commit <hash> --wall <s> --json ...

The first form clones HEAD into a temporary folder and runs `.ci/run` there (as root it installs
SLURM from Debian and removes it after; it re-points this environment's editable install at the
clone, so run `pip install --no-deps -e .` here afterwards). The second records a run already
made, from its output.
"""

import argparse
import re
import subprocess
import tempfile
import time

import record


def summary(log: str) -> dict:
    """pytest's totals and slowest durations, from its output."""
    totals = re.findall(r"=+ (.*) in ([\d.]+)s", log)[-1]
    slowest = log.split("slowest 25 durations", 1)[1].split("short test summary", 1)[0]
    return {
        "pytest_result": totals[0],
        "pytest_seconds": float(totals[1]),
        "slowest": [
            {"seconds": float(s), "phase": phase, "test": test}
            for s, phase, test in re.findall(r"^([\d.]+)s (\w+)\s+(\S+)$", slowest, re.M)
        ],
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", required=True)
    parser.add_argument("--log", help="the output of a run already made")
    parser.add_argument("--commit", help="the commit that run was made at (with --log)")
    parser.add_argument("--wall", type=float, help="that run's wall seconds (with --log)")
    args = parser.parse_args()
    result = record.provenance()
    if args.log:
        log = open(args.log).read()
        result |= {"commit": args.commit, "wall_seconds": args.wall}
    else:
        with tempfile.TemporaryDirectory() as clone:
            subprocess.run(["git", "clone", "-q", str(record.ROOT), clone], check=True)
            start = time.perf_counter()
            out = subprocess.run([".ci/run"], cwd=clone, capture_output=True, text=True)
            result["wall_seconds"] = time.perf_counter() - start
            log = out.stdout + out.stderr
            if out.returncode != 0:
                raise SystemExit(f".ci/run failed ({out.returncode}):\n{log[-3000:]}")
    result |= summary(log)
    record.write(result, args.json)


if __name__ == "__main__":
    main()
