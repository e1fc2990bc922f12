rule reference:
    input:
        pairs="results/pairs.parquet",
        policy="results/sft/model",
    output:
        "results/reference_logps.parquet",
    params:
        cfg=as_arg(config["reference"]),
    threads: all_cores()
    resources:
        **GPU,
    log:
        "results/logs/reference.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.reference --params {params.cfg} --pairs {input.pairs}"
        " --policy {input.policy} --out {output} > {log} 2>&1"


rule train_pairwise:
    input:
        pairs="results/pairs.parquet",
        reference=lambda w: "results/reference_logps.parquet" if w.method == "dpo" else [],
        policy="results/sft/model",
    output:
        model=directory("results/policies/{method}/{value}/seed{seed}/model"),
        metrics="results/policies/{method}/{value}/seed{seed}/metrics.csv",
    wildcard_constraints:
        method="dpo|cringe",
    params:
        cfg=trainer_params,
        launch=LAUNCH,
    threads: 1
    resources:
        **TRAIN,
    log:
        "results/logs/train_{method}_{value}_seed{seed}.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "{params.launch} pipeline.preference --params {params.cfg} --pairs {input.pairs}"
        " --reference '{input.reference}' --policy {input.policy} --model {output.model}"
        " --metrics {output.metrics} --checkpoint results/checkpoints/{wildcards.method}/"
        "{wildcards.value}/seed{wildcards.seed} > {log} 2>&1"


rule train_ppo:
    input:
        prompts="results/prompts/train.parquet",
        policy="results/sft/model",
    output:
        model=directory("results/policies/{method}/{value}/seed{seed}/model"),
        metrics="results/policies/{method}/{value}/seed{seed}/metrics.csv",
    wildcard_constraints:
        method="ppo",
    params:
        cfg=trainer_params,
    threads: 1
    resources:
        **GPU,
    log:
        "results/logs/train_{method}_{value}_seed{seed}.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.ppo --params {params.cfg} --prompts {input.prompts}"
        " --policy {input.policy} --model {output.model} --metrics {output.metrics}"
        " --checkpoint results/checkpoints/{wildcards.method}/{wildcards.value}/seed{wildcards.seed}"
        " > {log} 2>&1"
