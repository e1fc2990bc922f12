# `snakemake preflight`: a few steps of each kind of torch job with the configured models and
# batch sizes, on this machine, and the study's wall time projected from them (pipeline.preflight).
# Needs only the data and the tokenizer (and a GGUF policy's folder); it trains nothing.


def preflight_config():
    """Every setting the measured jobs use, and the study's counts of what they repeat over."""
    seeds = config["train"]["seeds"]
    trained = [m for m in config["train"]["methods"] if METHODS[m].trainer]
    policies = [REFERENCE] + trained_policies("table")  # Best-of-N's come from rule best_of_n
    return {
        "policy": policy_config(), "sft": config["sft"], "prompts": config["prompts"],
        "sample": sample_config(), "reward": config["reward"], "reference": config["reference"],
        "train": config["train"], "evaluate": evaluate_config(),
        "best_of_n": best_of_n_config(seeds[0]), "preflight": config["preflight"],
        "extensions": config["train"]["extensions"],
        "trainers": {m: trainer_config(m, str(config[m][METHODS[m].swept][0]), seeds[0])
                     for m in trained},
        "counts": {
            "train_prompts": config["data"]["n_train_prompts"],
            "samples": config["data"]["n_train_prompts"] * config["sample"]["n_per_prompt"],
            "eval_prompts": config["evaluate"]["n_prompts"],
            "eval_samples": config["evaluate"]["n_prompts"] * config["evaluate"]["samples_per_prompt"],
            "jobs": {m: len(config[m][METHODS[m].swept]) * len(seeds) for m in trained},
            "policies": len(policies),
            "best_of_n_jobs": len(seeds) if "best_of_n" in config["train"]["methods"] else 1,
            "cpu_jobs": {"data": 1, "tokenizer": 1, "prompts": 2, "pairs": 1, "table": 1,
                         "optimal": 1, "comparison": 1, "plots": 1, "side_by_side": 1},
        },
    }


rule preflight:
    input:
        sft="results/data/sft.parquet",
        tokenizer="results/tokenizer",
        pretrained=pretrained_input(),
    output:
        "results/preflight.csv",
    params:
        cfg=as_arg(preflight_config()),
    threads: all_cores()
    resources:
        **GPU,
    log:
        "results/logs/preflight.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.preflight --params {params.cfg} --sft {input.sft}"
        " --tokenizer {input.tokenizer} --out {output} 2>&1 | tee {log}"
