"""Stages of the IMDb controlled-sentiment study, one module per stage.

Every stage module has a `main()` reached as `python -m pipeline.<stage>`; none of them
imports snakemake, so each can be run and tested on its own.
"""

import os

# torch's OpenMP threads spin at every barrier by default. When the cores are shared (Snakemake
# running a 2-thread stage beside other jobs, or other users' work), a spinning thread holds a
# core its descheduled partner needs, and every op waits a time slice: sampling and a PPO
# iteration on 2 threads ran 9-12x slower than with sleeping threads on a loaded 2-core machine
# (benchmarks/omp_wait.py). OpenMP reads this when torch is first imported, hence here, before
# any stage imports torch; OMP_WAIT_POLICY=active in the environment overrides it.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
