rule prompts:
    input:
        reviews="results/data/{split}.parquet",
        tokenizer="results/tokenizer",
    output:
        "results/prompts/{split}.parquet",
    wildcard_constraints:
        split="train|eval",
    params:
        cfg=as_arg(config["prompts"]),
        recipe=lambda w: digest(recipe_prompts(w.split)),
    resources:
        **CPU,
    log:
        "results/logs/prompts_{split}.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.prompts --params {params.cfg} --reviews {input.reviews}"
        " --tokenizer {input.tokenizer} --out {output} > {log} 2>&1"


rule sample:
    input:
        prompts="results/prompts/train.parquet",
        policy="results/sft/model",
    output:
        "results/samples.parquet",
    params:
        precision=PRECISION,
        cfg=as_arg(sample_config()),
        recipe=lambda w: digest(recipe_samples(*sampler(w))),
    threads: all_cores()
    resources:
        **GPU,
    log:
        "results/logs/sample.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.sample --precision {params.precision}"
        " --params {params.cfg} --prompts {input.prompts}"
        " --policy {input.policy} --out {output} > {log} 2>&1"


rule score:
    input:
        "results/samples.parquet",
    output:
        "results/scores.parquet",
    params:
        precision=PRECISION,
        cfg=as_arg(config["reward"]),
        recipe=lambda w: digest(recipe_scores(*sampler(w))),
    threads: all_cores()
    resources:
        **SCORE,
    log:
        "results/logs/score.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.score --precision {params.precision}"
        " --params {params.cfg} --samples {input} --out {output} > {log} 2>&1"


rule pairs:
    input:
        "results/scores.parquet",
    output:
        pairs="results/pairs.parquet",
        rankings="results/rankings.parquet",
        unpaired="results/unpaired.parquet",
    params:
        recipe=lambda w: digest(recipe_scores(*sampler(w))),  # pairs has no config of its own
    resources:
        **CPU,
    log:
        "results/logs/pairs.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.pairs --scores {input} --out {output.pairs}"
        " --rankings {output.rankings} --unpaired {output.unpaired} > {log} 2>&1"
