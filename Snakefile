# IMDb controlled-sentiment generation (DPO paper, sec. 6.1): SFT -> prompts -> samples -> scores
# -> preference pairs -> trainers -> table. Rules live in workflow/rules, stage code in pipeline/.
from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/policy.smk"
include: "workflow/rules/preferences.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/rounds.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    default_target: True
    input:
        "results/table.csv",
        "results/comparison.csv",
        "results/plots/frontier.png",
