# Iterative rounds (iterative DPO; the Cringe paper's iterative Pairwise Cringe): round r >= 2
# samples the training prompts from round r - 1's policy, scores and pairs those samples with the
# true reward, and trains round r - 1's policy on them with the same method and settings. pi_ref
# (the SFT model) stays the reference, so every round optimises the same KL-regularised objective
# that the evaluation measures. Each stage is round 1's rule on the round's own folder.


use rule sample as sample_round with:
    input:
        prompts="results/prompts/train.parquet",
        policy=previous_round,
    output:
        f"{ROUND}/samples.parquet",
    params:
        cfg=lambda w: as_arg(sample_config(int(w.round))),
    log:
        job_log("sample", LATER),


use rule score as score_round with:
    input:
        f"{ROUND}/samples.parquet",
    output:
        f"{ROUND}/scores.parquet",
    log:
        job_log("score", LATER),


use rule pairs as pairs_round with:
    input:
        f"{ROUND}/scores.parquet",
    output:
        pairs=f"{ROUND}/pairs.parquet",
        rankings=f"{ROUND}/rankings.parquet",
        unpaired=f"{ROUND}/unpaired.parquet",
    log:
        job_log("pairs", LATER),


use rule reference as reference_round with:
    input:
        data=f"{ROUND}/{{data}}.parquet",
        policy="results/sft/model",
    output:
        f"{ROUND}/reference/{{data}}.parquet",
    log:
        job_log("reference_{data}", LATER),


use rule train_pairwise as train_round with:
    input:
        pairs=lambda w: f"{ROUND}/{preference_data(w.method)}.parquet".format(**w),
        reference=lambda w: (f"{ROUND}/reference/{preference_data(w.method)}.parquet".format(**w)
                             if METHODS[w.method].needs_reference else []),
        policy=previous_round,
    output:
        model=directory(policy_path(LATER, "model")),
        metrics=policy_path(LATER, "metrics"),
        trajectory=directory(policy_path(LATER, "trajectory")),
    wildcard_constraints:
        method="|".join(sorted(m for m, r in METHODS.items() if r.iterable)),
    params:
        cfg=lambda w: as_arg(trainer_config(w.method, w.value, w.seed) | {"round": int(w.round)}),
        checkpoint=policy_path(LATER, "checkpoint"),
    log:
        job_log("train", LATER),
