# IMDb controlled-sentiment generation (DPO paper, sec. 6.1): SFT -> prompts -> samples -> scores
# -> preference pairs -> trainers -> table. Rules live in workflow/rules, stage code in pipeline/.
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config.yaml"


include: "workflow/rules/config.smk"
include: "workflow/rules/common.smk"
include: "workflow/rules/recipes.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/policy.smk"
include: "workflow/rules/preferences.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/rounds.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/side_by_side.smk"
include: "workflow/rules/preflight.smk"


rule all:
    default_target: True
    input:
        "results/table.csv",
        "results/comparison.csv",
        "results/plots/frontier.png",
        "results/samples.md",


onsuccess:
    # where to look, for the main job's outputs that this run left in place
    made = [f"  {path:<28} {what}" for path, what in [
        ("results/table.csv", "sentiment and KL per policy, and per method and value over seeds"),
        ("results/comparison.csv", "each policy against the other methods' frontiers at its KL"),
        ("results/plots/", "frontier.png (reward against KL), sentiment.png, training.png"),
        ("results/samples.md", "the policies' completions side by side"),
    ] if Path(path).exists()]
    if made:
        report_command = "snakemake --report results/report.html"
        print("\nWhere to look:", *made, f"  {report_command} builds the HTML report of them all",
              sep="\n")
