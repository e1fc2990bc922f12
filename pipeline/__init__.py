"""The IMDb controlled-sentiment study: the stages in `pipeline/stages/`, one module per rule, and
below them the helpers in `pipeline/`, which import no stage (tests/test_imports.py).

Every stage module has a `main()` that one rule runs as `python -m pipeline.stages.<stage>`; none
of them imports snakemake, so each can be run and tested on its own. What two stages share lies in
a helper (docs/stages.md lists them).
"""

import os

# How torch's OpenMP threads wait between parallel regions. Spinning without end (OMP_WAIT_POLICY=
# active) holds a core that a descheduled partner or another job needs while Snakemake runs several
# jobs on few cores; sleeping at once (passive) pays a wake-up at every one of a step's hundreds of
# small ops. A short spin (GOMP_SPINCOUNT) first is about as fast as spinning alone and as kind as
# sleeping under contention (benchmarks/omp_wait.py; the figures: docs/performance.md). The results
# do not change. OpenMP reads this when torch is first imported, hence here; either variable set in
# the environment wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
