"""LoRA against full fine-tuning, side by side: each kind of trained job's seconds per step and
peak memory, as `snakemake preflight` measures them with and without `policy.lora`.

    python benchmarks/lora_cost.py --study <folder> --configfile workflow/presets/smollm2.yaml \\
        --json benchmarks/results/<name>.json [--lora '{r: 16, alpha: 32}'] [--repeats 2]

The study folder needs the preflight's inputs (its data, tokenizer and, for a GGUF policy, the
model folder: `snakemake preflight` makes them). Runs the preflight alternately without and with
the adapters, `--repeats` times each, and keeps every run's rows for SFT and each trainer (the
jobs that train; sampling, scoring and evaluation read merged model folders either way).
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import record
import yaml

TRAINED = {"sft", "train_pairwise", "train_ppo", "train_online"}


def preflight(study: Path, configfile: str, lora: str | None) -> pd.DataFrame:
    """One preflight run's rows for the jobs that train (its csv kept beside the study's)."""
    out = study / "results/preflight.csv"
    command = [sys.executable, "-m", "snakemake", "preflight", "--cores", "2", "--forcerun",
               "preflight", "--configfile", str(Path(configfile).resolve())]  # fmt: skip
    if lora:  # an overlay file: --config would read the nested numbers as strings
        overlay = study / "lora.yaml"
        overlay.write_text(yaml.safe_dump({"policy": {"lora": yaml.safe_load(lora)}}))
        command.append(str(overlay))
    subprocess.run(command, cwd=study, check=True, env=record.ENVIRON | {"HF_HUB_OFFLINE": "1"})
    table = pd.read_csv(out)
    shutil.copy(out, out.with_name(f"preflight-{'lora' if lora else 'full'}.csv"))
    return table[table["rule"].isin(TRAINED)]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", required=True, type=Path)
    parser.add_argument("--configfile", required=True)
    parser.add_argument("--lora", default="{r: 16, alpha: 32, target_modules: all-linear}")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    runs = []
    for repeat in range(args.repeats):
        for name, lora in (("full", None), ("lora", args.lora)):
            rows = preflight(args.study, args.configfile, lora)
            runs.append(rows.assign(setting=name, repeat=repeat))
    table = pd.concat(runs)
    table["job"] = (table["rule"] + " " + table["method"].fillna("")).str.strip()
    side = table.pivot_table(
        index="job",
        columns="setting",
        values=["seconds_per_unit", "peak_memory_mb"],
        aggfunc="mean",
    )
    side[("seconds_per_unit", "ratio")] = (
        side[("seconds_per_unit", "lora")] / side[("seconds_per_unit", "full")]
    )
    side[("peak_memory_mb", "ratio")] = (
        side[("peak_memory_mb", "lora")] / side[("peak_memory_mb", "full")]
    )
    print(side.round(3).to_string())
    result = record.provenance() | {
        "study": str(args.study),
        "configfile": args.configfile,
        "lora": args.lora,
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
