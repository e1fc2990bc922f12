#!/usr/bin/env bash
# The GPU checks of the paper-scale path in one run: tokens/s, MFU and peak memory of the
# pipeline's SFT step, DPO step (a prompt's pairs together, and shuffled), sampling loop and PPO
# iteration for gpt2-large in bf16 autocast (with and without gradient checkpointing, batch 128,
# a padded vocabulary), then the trainer, sampling and log-prob tests on CUDA.
#   OUT=benchmarks/out bash benchmarks/gpu_check.sh        (SIZE=tiny to try it on a CPU)
set -uo pipefail
OUT=${OUT:-benchmarks/out}
SIZE=${SIZE:-gpt2-large}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
bench="python3 benchmarks/throughput.py --size $SIZE --batch-size 64 --dpo-batch-size 64 --sample-batch-size 512 --ppo-rollout-size 1024 --ppo-minibatch-size 64"
$bench --json "$OUT/$SIZE.json" 2>"$OUT/bench.log"
$bench --batch-order pair --phases dpo --json "$OUT/$SIZE-pair-order.json" 2>>"$OUT/bench.log"
$bench --gradient-checkpointing --phases sft,dpo --json "$OUT/$SIZE-checkpointing.json" 2>>"$OUT/bench.log"
$bench --batch-size 128 --dpo-batch-size 128 --phases sft,dpo --json "$OUT/$SIZE-batch128.json" 2>>"$OUT/bench.log"
$bench --vocab-multiple 64 --phases sft,dpo --json "$OUT/$SIZE-vocab64.json" 2>>"$OUT/bench.log"
python3 -m pytest -q -p no:cacheprovider tests/test_trainers.py tests/test_trainer_inputs.py \
    tests/test_logprobs.py tests/test_sample.py tests/test_evaluate.py tests/test_resume.py 2>&1 | tail -25
