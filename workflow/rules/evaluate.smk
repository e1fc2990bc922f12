rule evaluate:
    input:
        prompts="results/prompts/eval.parquet",
        policy=policy_folder,
        reference="results/sft/model",
        ref_samples=lambda w: [] if w.policy == REFERENCE else "results/eval/sft/samples.parquet",
    output:
        samples="results/eval/{policy}/samples.parquet",
        reverse_kl="results/eval/{policy}/reverse_kl.parquet",
        summary="results/eval/{policy}/summary.json",
    wildcard_constraints:
        policy=r"sft|(dpo|cringe|ppo)/[^/]+/seed\d+",
    params:
        cfg=evaluate_params(),
        ref_samples=lambda w, input: f"--ref-samples {input.ref_samples}" if input.ref_samples else "",
    resources:
        **GPU,
    log:
        "results/logs/evaluate/{policy}.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.evaluate --params {params.cfg} --prompts {input.prompts}"
        " --policy {input.policy} --reference {input.reference} {params.ref_samples}"
        " --samples {output.samples} --reverse-kl {output.reverse_kl} --summary {output.summary}"
        " > {log} 2>&1"


rule table:
    input:
        expand("results/eval/{policy}/{f}", policy=evaluated_policies(),
               f=["samples.parquet", "reverse_kl.parquet", "summary.json"]),
    output:
        report("results/table.csv", caption="../report/table.rst", category="Results"),
    params:
        cfg=as_arg(config["table"] | {"policies": evaluated_policies()}),
    resources:
        **CPU,
    log:
        "results/logs/table.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.table --params {params.cfg} --eval-dir results/eval --out {output}"
        " > {log} 2>&1"


rule plots:
    input:
        table="results/table.csv",
        metrics=expand("results/policies/{policy}/metrics.csv", policy=trained_policies()),
    output:
        frontier=report("results/plots/frontier.png", caption="../report/frontier.rst",
                        category="Results"),
        sentiment=report("results/plots/sentiment.png", caption="../report/sentiment.rst",
                         category="Results"),
        training=report("results/plots/training.png", caption="../report/training.rst",
                        category="Training"),
    params:
        cfg=as_arg({"policies": evaluated_policies()}),
    resources:
        **CPU,
    log:
        "results/logs/plots.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.plots --params {params.cfg} --table {input.table}"
        " --eval-dir results/eval --policies-dir results/policies --frontier {output.frontier}"
        " --sentiment {output.sentiment} --training {output.training} > {log} 2>&1"
