"""Stages of the IMDb controlled-sentiment study, one module per stage.

Every stage module has a `main()` reached as `python -m pipeline.<stage>`; none of them
imports snakemake, so each can be run and tested on its own.
"""

import os

# How torch's OpenMP threads wait between parallel regions. Spinning without end (OMP_WAIT_POLICY=
# active) holds a core that a descheduled partner or another job needs while Snakemake runs several
# jobs on few cores; sleeping at once (passive) pays a futex wake-up at every one of a step's
# hundreds of small ops. Spinning ~0.1 ms first (GOMP_SPINCOUNT, in spins) was faster than both:
# the SFT stage alone on 2 cores 53-55 s (passive 68 s, active 58 s), and sampling 256 prompts on
# 2 threads beside three busy jobs 2.5-3.4 s (passive 6.0-6.8 s); benchmarks/omp_wait.py. The
# results do not change. OpenMP reads this when torch is first imported, hence here; either
# variable set in the environment wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
