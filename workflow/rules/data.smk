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
        "python -m pipeline.stages.data --params {params.cfg} --sft {output.sft}"
        " --train {output.train} --eval {output.eval} > {log} 2>&1"


# Run on a machine with internet (a cluster's login node), before submitting with
# HF_HUB_OFFLINE=1; a target of its own, no job depends on it. Output on the terminal and in the log.
rule download:
    localrule: True
    params:
        cfg=as_arg(download_config()),
    log:
        "results/logs/download.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.download --params {params.cfg} 2>&1 | tee {log}"
