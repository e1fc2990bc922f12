"""A config overlay's cost, side by side: each kind of job's seconds per unit and peak memory as
`snakemake preflight` measures them without and with the overlay (LoRA, a CPU number format).

    python benchmarks/preflight_ab.py --study <folder> --configfile workflow/presets/smollm2.yaml \\
        --overlay '{policy: {lora: {r: 16, alpha: 32, target_modules: all-linear}}}' \\
        --json benchmarks/results/lora-cost-smollm2.json [--repeats 2]
    python benchmarks/preflight_ab.py --study <folder> --configfile workflow/presets/smollm2.yaml \\
        --overlay '{resources: {cpu_precision: bf16}}' --json benchmarks/results/<name>.json

The study folder needs the preflight's inputs (its data, tokenizer and, for a GGUF policy, the
model folder: `snakemake preflight` makes them). Runs the preflight alternately without and with
the overlay, `--repeats` times each, and keeps every run's rows for the torch jobs.
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import record
import yaml

TORCH = {"sft", "sample", "reference", "train_pairwise", "train_ppo", "train_online", "evaluate",
         "best_of_n"}  # fmt: skip


def preflight(study: Path, configfile: str, overlay: dict | None) -> pd.DataFrame:
    """One preflight run's rows for the torch jobs (its csv kept beside the study's)."""
    out = study / "results/preflight.csv"
    command = [sys.executable, "-m", "snakemake", "preflight", "--cores", "2", "--forcerun",
               "preflight", "--configfile", str(Path(configfile).resolve())]  # fmt: skip
    if overlay:  # an overlay file: --config would read the nested numbers as strings
        (study / "overlay.yaml").write_text(yaml.safe_dump(overlay))
        command.append(str(study / "overlay.yaml"))
    subprocess.run(command, cwd=study, check=True, env=record.ENVIRON | {"HF_HUB_OFFLINE": "1"})
    table = pd.read_csv(out)
    shutil.copy(out, out.with_name(f"preflight-{'overlay' if overlay else 'base'}.csv"))
    return table[table["rule"].isin(TORCH)]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", required=True, type=Path)
    parser.add_argument("--configfile", required=True)
    parser.add_argument("--overlay", required=True, help="the config overlay, as YAML")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    overlay = yaml.safe_load(args.overlay)
    runs = []
    for repeat in range(args.repeats):
        for name, setting in (("base", None), ("overlay", overlay)):
            rows = preflight(args.study, args.configfile, setting)
            runs.append(rows.assign(setting=name, repeat=repeat))
    table = pd.concat(runs)
    table["job"] = (table["rule"] + " " + table["method"].fillna("")).str.strip()
    side = table.pivot_table(
        index="job",
        columns="setting",
        values=["seconds_per_unit", "peak_memory_mb"],
        aggfunc="mean",
    )
    for what in ("seconds_per_unit", "peak_memory_mb"):
        side[(what, "ratio")] = side[(what, "overlay")] / side[(what, "base")]
    print(side.round(3).to_string())
    result = record.provenance() | {
        "study": str(args.study),
        "configfile": args.configfile,
        "overlay": overlay,
        "repeats": args.repeats,
        "unit": {r.job: r.unit for r in table.drop_duplicates("job").itertuples()},
        "jobs": {
            job: {f"{what}_{setting}": round(float(v), 3) for (what, setting), v in row.items()}
            for job, row in side.iterrows()
        },
        "runs": table[["setting", "repeat", "job", "seconds_per_unit", "peak_memory_mb"]]
        .round(3)
        .to_dict("records"),
    }
    record.write(result, args.json)


if __name__ == "__main__":
    main()
