# `snakemake preflight`: a few steps of each kind of torch job with the configured models and
# batch sizes, on this machine, and the study's wall time projected from them (pipeline.stages.preflight).
# Needs only the data and the tokenizer (and a GGUF policy's folder); it trains nothing.


rule preflight:
    input:
        sft="results/data/sft.parquet",
        tokenizer="results/tokenizer",
        pretrained=pretrained_input(),
    output:
        "results/preflight.csv",
    params:
        precision=PRECISION,
        cfg=as_arg(preflight_config()),
    threads: all_cores()
    resources:
        **GPU,
    log:
        "results/logs/preflight.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.stages.preflight --precision {params.precision}"
        " --params {params.cfg} --sft {input.sft}"
        " --tokenizer {input.tokenizer} --out {output} 2>&1 | tee {log}"
