rule pretrained:
    output:
        directory(PRETRAINED),
    params:
        cfg=as_arg({"init": config["policy"]["init"]}),
    threads: all_cores()
    resources:
        # no GPU: it reads and dequantises a file; as much memory as the model's other jobs
        **CPU | {"mem_mb": GPU["mem_mb"]},
    log:
        "results/logs/pretrained.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.pretrained --params {params.cfg} --out {output} > {log} 2>&1"


rule tokenizer:
    input:
        sft="results/data/sft.parquet",
        pretrained=pretrained_input(),
    output:
        directory("results/tokenizer"),
    params:
        cfg=as_arg(tokenizer_config()),
        recipe=digest(recipe_tokenizer()),
    resources:
        **CPU,
    log:
        "results/logs/tokenizer.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.tokenizer --params {params.cfg} --sft {input.sft} --out {output}"
        " > {log} 2>&1"


rule sft:
    input:
        sft="results/data/sft.parquet",
        tokenizer="results/tokenizer",
        pretrained=pretrained_input(),
    output:
        model=directory("results/sft/model"),
        metrics="results/sft/metrics.csv",
        eval="results/sft/heldout.json",
    params:
        precision=PRECISION,
        cfg=as_arg(sft_config()),
        recipe=digest(recipe_sft()),
        launch=LAUNCH,
    threads: all_cores()
    resources:
        **TRAIN,
    log:
        "results/logs/sft.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "{params.launch} pipeline.stages.sft --precision {params.precision}"
        " --params {params.cfg} --sft {input.sft} --tokenizer {input.tokenizer}"
        " --checkpoint results/checkpoints/sft --model {output.model} --metrics {output.metrics}"
        " --eval {output.eval} > {log} 2>&1"
