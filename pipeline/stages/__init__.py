"""The stages: one module per rule, each with a `main()` that its rule runs as
`python -m pipeline.stages.<stage>`. A stage imports helpers (`pipeline/*.py`), never snakemake
and never another stage, the preflight apart: it times the other stages' own jobs."""
