"""Stages of the IMDb controlled-sentiment study, one module per stage.

Every stage module has a `main()` reached as `python -m pipeline.<stage>`; none of them
imports snakemake, so each can be run and tested on its own.
"""

import os

# torch's OpenMP threads spin at every barrier by default. When the cores are shared (Snakemake
# running a 2-thread stage beside other jobs, or other users' work), a spinning thread holds a
# core its descheduled partner needs, and every op waits a time slice: sampling on 2 threads ran
# 10-30x slower than on 1 on this 2-core machine under load. Sleeping threads keep 2 threads at
# about 1 thread's speed or better. OpenMP reads this when torch is first imported, hence here,
# before any stage imports torch; OMP_WAIT_POLICY=active in the environment overrides it.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
