#!/usr/bin/env bash
# The GPU checks of the paper-scale path in one run: tokens/s, MFU and peak memory of the
# pipeline's SFT step, DPO and Cringe steps (a prompt's pairs together; DPO also shuffled), sampling, PPO
# iterations for gpt2-large in bf16 autocast (eager, compiled, with a padded vocabulary), then the
# trainer, sampling and log-prob tests on CUDA. Batch 128 and gradient checkpointing were measured
# before (benchmarks/results/h200-*-before.json): `--batch-size 128`, `--gradient-checkpointing`.
#   OUT=benchmarks/out bash benchmarks/gpu_check.sh        (SIZE=tiny to try it on a CPU)
set -uo pipefail
OUT=${OUT:-benchmarks/out}
SIZE=${SIZE:-gpt2-large}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
bench="python3 benchmarks/throughput.py --size $SIZE --batch-size 64 --dpo-batch-size 64 --sample-batch-size 512 --ppo-rollout-size 1024 --ppo-minibatch-size 64"
# most wanted first; each run rewrites its JSON after every phase, so a run cut off keeps what it
# measured (compiling gpt2-large's forward and backward takes minutes: one per module and shape)
$bench --json "$OUT/$SIZE.json" 2>"$OUT/bench.log"
timeout 240 $bench --compile --phases sft,dpo,ppo --json "$OUT/$SIZE-compile.json" 2>>"$OUT/bench.log"
$bench --vocab-multiple 64 --phases sft,dpo --json "$OUT/$SIZE-vocab64.json" 2>>"$OUT/bench.log"
$bench --batch-order pair --phases dpo --json "$OUT/$SIZE-pair-order.json" 2>>"$OUT/bench.log"
python3 -m pytest -q -p no:cacheprovider tests/test_trainers.py tests/test_trainer_inputs.py \
    tests/test_logprobs.py tests/test_batching.py tests/test_sample.py tests/test_evaluate.py \
    tests/test_resume.py 2>&1 | tail -25
