rule data:
    output:
        sft="results/data/sft.parquet",
        train="results/data/train.parquet",
        eval="results/data/eval.parquet",
    params:
        cfg=as_arg(config["data"]),
        recipe=digest(recipe_data()),
    resources:
        **CPU,
    log:
        "results/logs/data.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.data --params {params.cfg} --sft {output.sft}"
        " --train {output.train} --eval {output.eval} > {log} 2>&1"
