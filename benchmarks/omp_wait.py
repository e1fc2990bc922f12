"""torch's OpenMP wait policy on a shared machine: one PPO iteration (sampling, scoring, updates)
and one sampling batch of the embedded default's policy, with OMP_WAIT_POLICY=active (threads spin
at barriers, OpenMP's default) and passive (they sleep; what pipeline/__init__.py sets), runs
alternating in fresh processes, on the given threads.

    python benchmarks/omp_wait.py --policy results/sft/model --prompts results/prompts/train.parquet \\
        --json benchmarks/results/omp-wait.json [--repeats 4] [--threads 2]

The difference shows only while the cores are shared (other jobs of the main job, or other
users); `uptime` before and after is recorded with the figures.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

import record

CHILD = r'''
import json, sys, time, copy
import torch
import pandas as pd
sys.path.insert(0, "benchmarks")
from pipeline import ppo
from pipeline.models import load_causal_lm
from pipeline.safe_loading import load_tokenizer
from pipeline.sample import sample
from pipeline.score import VaderScorer
from ppo_vs_trl import ppo_params

policy_dir, prompts_file, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
tok, policy = load_tokenizer(policy_dir, "policy"), load_causal_lm(policy_dir, "policy")
prompts = [list(x) for x in pd.read_parquet(prompts_file, columns=["prompt_ids"])["prompt_ids"]]
gen = torch.Generator().manual_seed(0)
t0 = time.perf_counter()
sample(policy.eval(), prompts[:256], 48, tok.eos_token_id, tok.pad_token_id, gen)
t1 = time.perf_counter()
model = ppo.PolicyWithValue(copy.deepcopy(policy))
ppo.train(model, copy.deepcopy(policy).requires_grad_(False), tok, prompts, VaderScorer(),
          ppo_params(1))
print(json.dumps({"sample_256x48_s": t1 - t0, "ppo_iteration_s": time.perf_counter() - t1}))
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="results/sft/model")
    ap.add_argument("--prompts", default="results/prompts/train.parquet")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    info = record.provenance()
    runs = {"active": [], "passive": []}
    for _ in range(args.repeats):
        for policy in runs:
            env = os.environ | {"OMP_WAIT_POLICY": policy, "PYTHONPATH": str(record.ROOT),
                                "HF_HUB_OFFLINE": "1"}
            out = subprocess.run([sys.executable, "-c", CHILD, args.policy, args.prompts,
                                  str(args.threads)], env=env, cwd=record.ROOT,
                                 capture_output=True, text=True, check=True)
            runs[policy].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(policy, runs[policy][-1], flush=True)
    medians = {p: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for p, rs in runs.items()}
    for k in medians["active"]:
        print(f"{k}: active {medians['active'][k]:.2f} s, passive {medians['passive'][k]:.2f} s"
              f" (medians), {medians['active'][k] / medians['passive'][k]:.1f}x")
    if args.json:
        record.write(info | {"args": vars(args), "runs": runs, "medians_s": medians}, args.json)


if __name__ == "__main__":
    main()
