# The recipe digests. Snakemake deletes a failed job's outputs, and it does not remake a missing
# output while the outputs downstream of it are present (snakemake/snakemake#1978, on purpose
# since 7.7): after an edit whose job then fails, the next run would say "Nothing to be done" and
# keep the old config's results. So each rule also gets, as a param it does not use, a digest of
# the config of everything upstream of its output: the jobs below an edit see their params
# changed and ask again for what the failed job makes. Each recipe maps artifact -> config.
#
# Why these functions restate which stage feeds which instead of reading it off the DAG: a rule's
# params are evaluated while Snakemake is still building the DAG, job by job, and a params
# function sees its own job's wildcards, not the jobs upstream of it, so no rule can ask for its
# ancestors' params. What keeps them honest is that every recipe is built from the same config
# slices the rules pass as params (the *_config functions in common.smk), and the workflow tests
# check that an edit reruns exactly the stages below it.


def recipe_data():
    return {"data": config["data"]}


def recipe_pretrained():
    return {"pretrained": config["policy"]["init"]} if pretrained_input() else {}


def recipe_tokenizer():
    return recipe_data() | recipe_pretrained() | {"tokenizer": tokenizer_config()}


def recipe_sft():
    """Every torch stage's artifact descends from SFT's: the CPU's number format enters here."""
    return recipe_tokenizer() | {"sft": sft_config(), "cpu_precision": PRECISION}


def recipe_prompts(split):
    return recipe_tokenizer() | {f"prompts/{split}": config["prompts"]}


def recipe_samples(by=REFERENCE, rnd=1):
    policy = recipe_sft() if by == REFERENCE else recipe_policy(by)
    return policy | recipe_prompts("train") | {f"samples/{by}": sample_config(rnd)}


def recipe_scores(by=REFERENCE, rnd=1):
    return recipe_samples(by, rnd) | {f"scores/{by}": config["reward"]}


def recipe_reference(by=REFERENCE, rnd=1):
    return recipe_scores(by, rnd) | {f"reference/{by}": config["reference"]}


def recipe_reward_model():
    return recipe_scores() | {"reward_model": reward_model_config()}


def recipe_policy(pid):
    """A pairwise policy's data recipe holds the policy it starts from (the one that sampled its
    data: pi_ref, or the previous round's), so it is not added again."""
    method, value, seed, rnd, _ = split_policy_id(pid)  # a point along a run: the run's recipe
    record = METHODS[method]
    by = REFERENCE if rnd == 1 else policy_id(method, value, seed, rnd - 1)
    if record.trainer == "preference":
        data = (recipe_reference if record.needs_reference else recipe_scores)(by, rnd)
    else:  # PPO samples its own rollouts
        data = recipe_sft() | recipe_prompts("train") | (
            recipe_reward_model() if record.learned_reward else {})
    return data | {pid: trainer_config(method, value, seed)}


def recipe_best_of_n(seed):
    return recipe_sft() | recipe_prompts("eval") | {policy_id("best_of_n", "pool", seed): best_of_n_config(seed)}


def recipe_eval(pid):
    if pid == REFERENCE:
        policy = recipe_sft()
    elif METHODS[split_policy_id(pid)[0]].data == NOTHING:  # Best-of-N: pi_ref's samples
        return recipe_best_of_n(split_policy_id(pid)[2])
    else:
        policy = recipe_policy(pid) | recipe_eval(REFERENCE)
    return policy | recipe_prompts("eval") | {f"eval/{pid}": evaluate_config()}


def recipe_optimal():
    return recipe_best_of_n(config["train"]["seeds"][0]) | {"optimal": optimal_config()}


def recipe_evals(study):
    recipe = {}
    for pid in evaluated_policies(study):
        recipe |= recipe_eval(pid)
    return recipe


def recipe_table(study):
    return ({"table": config["table"] | {"study": study}} | recipe_evals(study)
            | (recipe_optimal() if study == "table_full" else {}))


def recipe_side_by_side():
    return {"side_by_side": config["side_by_side"]} | recipe_evals("table")
