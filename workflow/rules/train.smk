rule reference:
    input:
        data="results/{data}.parquet",
        policy="results/sft/model",
    output:
        "results/reference/{data}.parquet",
    wildcard_constraints:
        data="pairs|rankings|unpaired",
    params:
        precision=PRECISION,
        cfg=as_arg(config["reference"]),
        recipe=lambda w: digest(recipe_reference(*sampler(w))),
    threads: all_cores()
    resources:
        **GPU,
    log:
        "results/logs/reference_{data}.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.reference --precision {params.precision}"
        " --params {params.cfg} --pairs {input.data}"
        " --policy {input.policy} --out {output} > {log} 2>&1"


rule train_pairwise:
    input:
        pairs=lambda w: f"results/{preference_data(w.method)}.parquet",
        reference=lambda w: (f"results/reference/{preference_data(w.method)}.parquet"
                             if METHODS[w.method].needs_reference else []),
        policy="results/sft/model",
    output:
        model=directory(policy_path(RUN, "model")),
        metrics=policy_path(RUN, "metrics"),
        trajectory=directory(policy_path(RUN, "trajectory")),
    wildcard_constraints:
        method=methods_trained_by("preference"),
    params:
        precision=PRECISION,
        cfg=trainer_params,
        recipe=lambda w: digest(recipe_policy(trained_policy(w))),
        launch=LAUNCH,
        checkpoint=policy_path(RUN, "checkpoint"),
    threads: threads_of("train")
    resources:
        **TRAIN,
    log:
        job_log("train", RUN),
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "{params.launch} pipeline.stages.preference --precision {params.precision}"
        " --params {params.cfg} --pairs {input.pairs}"
        " --reference '{input.reference}' --policy {input.policy} --model {output.model}"
        " --metrics {output.metrics} --trajectory {output.trajectory}"
        " --checkpoint {params.checkpoint} > {log} 2>&1"


rule reward_model:
    input:
        pairs="results/pairs.parquet",
        policy="results/sft/model",
    output:
        model=directory(REWARD_MODEL),
        metrics="results/reward_model/metrics.csv",
        summary="results/reward_model/summary.json",
    params:
        precision=PRECISION,
        cfg=as_arg(reward_model_config()),
        recipe=digest(recipe_reward_model()),
    threads: all_cores()
    resources:
        **GPU,
    log:
        "results/logs/reward_model.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.reward_model --precision {params.precision}"
        " --params {params.cfg} --pairs {input.pairs}"
        " --policy {input.policy} --model {output.model} --metrics {output.metrics}"
        " --summary {output.summary} --checkpoint results/checkpoints/reward_model > {log} 2>&1"


rule train_ppo:
    input:
        prompts="results/prompts/train.parquet",
        policy="results/sft/model",
        reward_model=lambda w: REWARD_MODEL if METHODS[w.method].learned_reward else [],
    output:
        model=directory(policy_path(RUN, "model")),
        metrics=policy_path(RUN, "metrics"),
        trajectory=directory(policy_path(RUN, "trajectory")),
    wildcard_constraints:
        method=methods_trained_by("ppo"),
    params:
        precision=PRECISION,
        cfg=trainer_params,
        recipe=lambda w: digest(recipe_policy(trained_policy(w))),
        launch=LAUNCH,
        checkpoint=policy_path(RUN, "checkpoint"),
    threads: threads_of("train")
    resources:
        **TRAIN,
    log:
        job_log("train", RUN),
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "{params.launch} pipeline.stages.ppo --precision {params.precision}"
        " --params {params.cfg} --prompts {input.prompts}"
        " --policy {input.policy} --model {output.model} --metrics {output.metrics}"
        " --trajectory {output.trajectory}"
        " --checkpoint {params.checkpoint}"
        " > {log} 2>&1"


rule train_online:
    input:
        prompts="results/prompts/train.parquet",
        policy="results/sft/model",
    output:
        model=directory(policy_path(RUN, "model")),
        metrics=policy_path(RUN, "metrics"),
        trajectory=directory(policy_path(RUN, "trajectory")),
    wildcard_constraints:
        method=methods_trained_by("online"),
    params:
        precision=PRECISION,
        cfg=trainer_params,
        recipe=lambda w: digest(recipe_policy(trained_policy(w))),
        checkpoint=policy_path(RUN, "checkpoint"),
    threads: threads_of("train")
    resources:
        **GPU,
    log:
        job_log("train", RUN),
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.online --precision {params.precision}"
        " --params {params.cfg} --prompts {input.prompts}"
        " --policy {input.policy} --model {output.model} --metrics {output.metrics}"
        " --trajectory {output.trajectory}"
        " --checkpoint {params.checkpoint}"
        " > {log} 2>&1"
