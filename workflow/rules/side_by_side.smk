rule side_by_side:
    input:
        prompts="results/prompts/eval.parquet",
        samples=expand(policy_path("{policy}", "eval", "samples.parquet"), policy=evaluated_policies("table")),
    output:
        markdown="results/samples.md",
        html=report("results/samples.html", caption="../report/samples.rst", category="Results"),
    params:
        cfg=as_arg(config["side_by_side"] | borrowed("side_by_side")
                   | {"policies": evaluated_policies("table")}),
        recipe=digest(recipe_side_by_side()),
    resources:
        **CPU,
    log:
        "results/logs/side_by_side.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.side_by_side --params {params.cfg} --prompts {input.prompts}"
        " --samples {input.samples} --markdown {output.markdown} --html {output.html} > {log} 2>&1"
