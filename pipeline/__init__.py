"""Stages of the IMDb controlled-sentiment study, one module per stage.

Every stage module has a `main()` reached as `python -m pipeline.<stage>`; none of them
imports snakemake, so each can be run and tested on its own.
"""
