"""How torch's OpenMP threads should wait, alone and beside other jobs: 40 SFT steps and one
sampling batch of the embedded default's policy on 2 threads (the stages that run on every core),
runs alternating in fresh processes, under

- `passive`: OMP_WAIT_POLICY=passive, threads sleep at once at every barrier;
- `spin N`: GOMP_SPINCOUNT=N, a thread spins N times (~N / 100 microseconds) and then sleeps;
  pipeline/__init__.py sets 1000 when neither variable is given;
- `active`: OMP_WAIT_POLICY=active, threads spin without end.

    python benchmarks/omp_wait.py --policy results/sft/model \\
        --prompts results/prompts/train.parquet \\
        --json benchmarks/results/omp-wait.json [--busy 0 3] [--spins 1000] [--repeats 3]

`--busy N` runs N single-threaded busy loops for the duration of the runs, as the main job runs its
one-thread trainers beside a two-thread stage; each level of `--busy` is measured in turn. `uptime`
before and after is recorded with the figures.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

import record

CHILD = r"""
import json, sys, time, copy
import torch
import pandas as pd
sys.path.insert(0, "benchmarks")
from pipeline.stages import sft
from pipeline.models import device, load_causal_lm
from pipeline.safe_loading import load_tokenizer
from pipeline.sampling import sample
from pipeline.settings import read
from throughput import SFT_UNTIMED

policy_dir, prompts_file, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
tok, policy = load_tokenizer(policy_dir, "policy"), load_causal_lm(policy_dir, "policy")
prompts = [list(x) for x in pd.read_parquet(prompts_file, columns=["prompt_ids"])["prompt_ids"]]
# the SFT stage's step: batches of 32 reviews of 64 tokens
reviews = torch.randint(len(tok), (40 * 32, 64), generator=torch.Generator().manual_seed(0))
reviews = reviews.tolist()
p = SFT_UNTIMED | {"batch_size": 32, "epochs": 1, "lr": 3e-3, "weight_decay": 0.0,
     "warmup_steps": 30, "max_grad_norm": 1.0, "micro_batch_size": None,
     "gradient_checkpointing": False, "compile": False, "seed": 0}
t0 = time.perf_counter()
sft.train(copy.deepcopy(policy), reviews, tok.pad_token_id, read(sft.Settings, p, "sft"), device())
t1 = time.perf_counter()
sample(policy.eval(), prompts[:256], 48, tok.eos_token_id, tok.pad_token_id,
       torch.Generator().manual_seed(0))
print(json.dumps({"sft_40_steps_s": t1 - t0, "sample_256x48_s": time.perf_counter() - t1}))
"""

BUSY = [sys.executable, "-c", "while True: pass"]


def measure(args, settings: dict, busy: int) -> dict:
    """Each setting's runs, alternating, with `busy` busy loops beside them."""
    loops = [subprocess.Popen(BUSY) for _ in range(busy)]
    runs = {name: [] for name in settings}
    try:
        for _ in range(args.repeats):
            for name, wait in settings.items():
                env = {
                    k: v
                    for k, v in os.environ.items()
                    if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                }
                env |= wait | {"PYTHONPATH": str(record.ROOT), "HF_HUB_OFFLINE": "1"}
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, args.policy, args.prompts, str(args.threads)],
                    env=env,
                    cwd=record.ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"busy {busy}", name, runs[name][-1], flush=True)
    finally:
        for loop in loops:
            loop.kill()
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="results/sft/model")
    ap.add_argument("--prompts", default="results/prompts/train.parquet")
    ap.add_argument("--busy", type=int, nargs="+", default=[0, 3])
    ap.add_argument("--spins", type=int, nargs="+", default=[1000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    info = record.provenance()
    settings = {"passive": {"OMP_WAIT_POLICY": "passive"}}
    settings |= {f"spin {n}": {"GOMP_SPINCOUNT": str(n)} for n in args.spins}
    settings |= {"active": {"OMP_WAIT_POLICY": "active"}}
    runs, medians = {}, {}
    for busy in args.busy:
        runs[busy] = measure(args, settings, busy)
        medians[busy] = {
            name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            for name, rs in runs[busy].items()
        }
        for k in medians[busy]["passive"]:
            print(
                f"busy {busy}, {k} (medians): "
                + ", ".join(f"{name} {m[k]:.2f} s" for name, m in medians[busy].items())
            )
    if args.json:
        record.write(info | {"args": vars(args), "runs": runs, "medians_s": medians}, args.json)


if __name__ == "__main__":
    main()
