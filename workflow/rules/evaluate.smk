# Every policy but pi_ref: its reverse KL reads pi_ref's samples and pi_ref's final hidden states
# on them, which pi_ref's own evaluation (below) writes once.
rule evaluate:
    input:
        prompts="results/prompts/eval.parquet",
        policy=policy_folder,
        reference="results/sft/model",
        ref_samples=policy_path(REFERENCE, "eval", "samples.parquet"),
        ref_states=REFERENCE_STATES,
    output:
        samples=policy_path("{policy}", "eval", "samples.parquet"),
        reverse_kl=policy_path("{policy}", "eval", "reverse_kl.parquet"),
        summary=policy_path("{policy}", "eval", "summary.json"),
    wildcard_constraints:
        policy=policy_id_pattern(m for m, r in METHODS.items() if r.trainer),
    params:
        cfg=as_arg(evaluate_config()),
        recipe=lambda w: digest(recipe_eval(w.policy)),
        policy=lambda w: policy_model(w.policy),
        reference=lambda w, input: f"--ref-samples {input.ref_samples} --ref-states {input.ref_states}",
        precision=PRECISION,
    threads: threads_of("evaluate")
    resources:
        **GPU,
    log:
        "results/logs/evaluate/{policy}.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.evaluate --precision {params.precision}"
        " --params {params.cfg}"
        " --prompts {input.prompts} --policy {params.policy} --reference {input.reference}"
        " {params.reference} --samples {output.samples} --reverse-kl {output.reverse_kl}"
        " --summary {output.summary} > {log} 2>&1"


use rule evaluate as evaluate_reference with:
    input:
        prompts="results/prompts/eval.parquet",
        policy="results/sft/model",
        reference="results/sft/model",
    output:
        samples=policy_path(REFERENCE, "eval", "samples.parquet"),
        reverse_kl=policy_path(REFERENCE, "eval", "reverse_kl.parquet"),
        summary=policy_path(REFERENCE, "eval", "summary.json"),
        states=REFERENCE_STATES,
    params:
        recipe=digest(recipe_eval(REFERENCE)),
        policy=lambda w, input: input.policy,
        reference=lambda w, output: f"--states {output.states}",
    log:
        f"results/logs/evaluate/{REFERENCE}.log",


rule best_of_n:
    input:
        prompts="results/prompts/eval.parquet",
        policy="results/sft/model",
    output:
        evals=[policy_path(policy_id("best_of_n", n, "{seed}"), "eval", f)
               for n in config["best_of_n"]["n"]
               for f in ["samples.parquet", "reverse_kl.parquet", "summary.json"]],
        pool=policy_path(policy_id("best_of_n", "pool", "{seed}"), "pool"),
    params:
        precision=PRECISION,
        cfg=lambda w: as_arg(best_of_n_config(w.seed)),
        recipe=lambda w: digest(recipe_best_of_n(w.seed)),
        # each N's evaluation folder, in best_of_n.n's order
        evals=lambda w, output: " ".join(dict.fromkeys(str(Path(f).parent) for f in output.evals)),
    threads: all_cores()
    resources:
        **GPU,
    log:
        job_log("best_of_n", policy_id("best_of_n", "pool", "{seed}")),
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.best_of_n --precision {params.precision}"
        " --params {params.cfg} --prompts {input.prompts}"
        " --policy {input.policy} --evals {params.evals} --pool {output.pool} > {log} 2>&1"


rule optimal:
    input:
        OPTIMAL_POOL,
    output:
        "results/optimal.csv",
    params:
        cfg=as_arg(optimal_config()),
        recipe=digest(recipe_optimal()),
    resources:
        **CPU,
    log:
        "results/logs/optimal.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.optimal --params {params.cfg} --pool {input} --out {output} > {log} 2>&1"


rule table:
    input:
        evals=lambda w: evaluations(w.study),
        optimal=lambda w: "results/optimal.csv" if w.study == "table_full" else [],
    output:
        report("results/{study}.csv", caption="../report/table.rst", category="Results"),
    wildcard_constraints:
        study="|".join(STUDIES),
    params:
        cfg=lambda w: as_arg(config["table"] | borrowed("table")
                             | {"policies": evaluated_policies(w.study)}),
        recipe=lambda w: digest(recipe_table(w.study)),
        optimal=lambda w, input: f"--optimal {input.optimal}" if input.optimal else "",
    resources:
        **CPU,
    log:
        "results/logs/{study}.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.table --params {params.cfg} --evals {input.evals} {params.optimal}"
        " --out {output} > {log} 2>&1"


rule comparison:
    input:
        evals=lambda w: evaluations(COMPARISONS[w.comparison]),
        pool=OPTIMAL_POOL,
    output:
        report("results/{comparison}.csv", caption="../report/comparison.rst", category="Results"),
    wildcard_constraints:
        comparison="|".join(COMPARISONS),
    params:
        cfg=lambda w: as_arg(optimal_config() | borrowed("comparison")
                             | {"policies": evaluated_policies(COMPARISONS[w.comparison])}),
        recipe=lambda w: digest(recipe_table(COMPARISONS[w.comparison]) | recipe_optimal()),
    resources:
        **CPU,
    log:
        "results/logs/{comparison}.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.compare --params {params.cfg} --evals {input.evals}"
        " --pool {input.pool} --out {output} > {log} 2>&1"


rule plots:
    input:
        table=lambda w: f"results/{PLOTS[w.plots]}.csv",
        optimal="results/optimal.csv",
        samples=lambda w: expand(policy_path("{policy}", "eval", "samples.parquet"),
                                 policy=evaluated_policies(PLOTS[w.plots])),
        metrics=lambda w: expand(policy_path("{policy}", "metrics"),
                                 policy=trained_policies(PLOTS[w.plots])),
    output:
        frontier=report("results/{plots}/frontier.png", caption="../report/frontier.rst",
                        category="Results"),
        sentiment=report("results/{plots}/sentiment.png", caption="../report/sentiment.rst",
                         category="Results"),
        training=report("results/{plots}/training.png", caption="../report/training.rst",
                        category="Training"),
    wildcard_constraints:
        plots="|".join(PLOTS),
    params:
        cfg=lambda w: as_arg(borrowed("plots") | {"policies": evaluated_policies(PLOTS[w.plots])}),
        recipe=lambda w: digest(recipe_table(PLOTS[w.plots]) | recipe_optimal()),
        metrics=lambda w, input: f"--metrics {input.metrics}" if input.metrics else "",
    resources:
        **CPU,
    log:
        "results/logs/{plots}.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.plots --params {params.cfg} --table {input.table} --optimal {input.optimal}"
        " --samples {input.samples} {params.metrics} --frontier {output.frontier}"
        " --sentiment {output.sentiment} --training {output.training} > {log} 2>&1"


rule leaderboard:
    input:
        evals=evaluations("table_full"),
        pool=OPTIMAL_POOL,
    output:
        report("results/leaderboard.csv", caption="../report/leaderboard.rst", category="Results"),
    params:
        cfg=as_arg(optimal_config() | config["leaderboard"] | borrowed("comparison")
                   | {"policies": evaluated_policies("table_full")}),
        recipe=digest(recipe_table("table_full") | {"leaderboard": config["leaderboard"]}),
    resources:
        **CPU,
    log:
        "results/logs/leaderboard.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.leaderboard --params {params.cfg} --evals {input.evals}"
        " --pool {input.pool} --out {output} > {log} 2>&1"
