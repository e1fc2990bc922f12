"""The study's methods, one record each (pipeline.registry): the slides' DPO, Pairwise Cringe and
PPO, the DPO paper's other baselines, noisy labels, the RLHF route, best-choice data, TRL's DPO
loss family, f-DPO, the reference-free losses, the online methods and KTO. The DAG, the config
schema, the trainers, the plots and the tests all read them from here, which also gives the
registry's names, so that whatever imports this module sees the whole catalogue.

Losses and steps are named as strings ("pipeline.losses:dpo_loss", "pipeline.steps:GRPO") so
that the Snakefile and the stages without torch read the catalogue without importing torch.
"""

from pipeline import config
from pipeline.registry import (
    DATA,
    EXTENSION_OF,
    FAMILIES,
    LOSSES,
    METHODS,
    NOTHING,
    ONLINE,
    PAIRS,
    PAIRWISE_TRAINING,
    RANKED_PAIRS,
    RANKINGS,
    REFERENCE,
    RESERVED,
    TRAINERS,
    UNPAIRED,
    Method,
    choice,
    filled_schema,
    integer,
    load_extensions,
    method,
    method_setting,
    number,
    online,
    pairwise,
    register,
    resolve,
    swept,
)

__all__ = [
    "choice",
    "DATA",
    "EXTENSION_OF",
    "FAMILIES",
    "filled_schema",
    "integer",
    "load_extensions",
    "Method",
    "method",
    "METHODS",
    "method_setting",
    "NOTHING",
    "number",
    "ONLINE",
    "online",
    "PAIRS",
    "pairwise",
    "RANKED_PAIRS",
    "RANKINGS",
    "REFERENCE",
    "register",
    "RESERVED",
    "resolve",
    "swept",
    "TRAINERS",
    "UNPAIRED",
]

BETAS = [0.1, 1.0]
NOISE_RATE = swept(
    [0.2, 0.4],
    "swept; flip: the fraction of labels flipped; outliers: the fraction replaced by a coin flip",
    minimum=0,
    exclusive=False,
    maximum=1,
)
NOISE = {
    "mode": choice("flip", "outliers"),
    "beta": number(0.1, exclusiveMinimum=0),
}


S = "pipeline.steps:"  # where the steps and objectives are
# The slides' table
register(
    Method(
        name="dpo",
        label="DPO (beta)",
        colour="tab:blue",
        swept="beta",
        data=PAIRS,
        family="DPO: margin losses",
        loss=LOSSES + "dpo_loss",
        needs_reference=True,
        section={"beta": swept(BETAS), **PAIRWISE_TRAINING},
    )
)
register(
    Method(
        name="cringe",
        label="Pairwise Cringe (b)",
        colour="tab:green",
        swept="b",
        data=PAIRS,
        family="reference-free",
        step=S + "cringe_step",
        section={
            "b": swept([0.0], "swept; margin of the gate g = sigmoid((b - M) / tau)", None),
            "tau": number(1.0, exclusiveMinimum=0),
            "k": integer(5, "top-k candidates for the positive token"),
            "gate_ce": {
                "type": "boolean",
                "default": True,
                "description": "true: g * (L_CE + L_Cr); false: L_CE + g * L_Cr",
            },
            **PAIRWISE_TRAINING,
        },
    )
)
register(
    Method(
        name="ppo",
        label="PPO, true reward (target KL)",
        colour="tab:red",
        swept="target_kl",
        data=ONLINE,
        module="ppo",  # with a value head: its own trainer
        family="online RL",
        section={
            "target_kl": swept(
                [2.0, 6.0], "swept; target of the adaptive KL controller (nats per sequence)"
            ),
            **config.properties(config.Ppo),
        },
    )
)
# The DPO paper's other baselines
register(
    Method(
        name="ipo",
        label="IPO (tau)",
        colour="tab:purple",
        swept="tau",
        data=PAIRS,
        family="DPO: margin losses",
        loss=LOSSES + "ipo_loss",
        needs_reference=True,
        settings_from="dpo",
        section={
            "tau": swept([0.05, 0.5], "swept; IPO regresses the log-ratio margin onto 1 / (2 tau)")
        },
    )
)
register(
    Method(
        name="unlikelihood",
        label="Unlikelihood (alpha)",
        colour="tab:brown",
        swept="alpha",
        data=PAIRS,
        family="reference-free",
        loss=LOSSES + "unlikelihood_loss",
        settings_from="dpo",
        section={"alpha": swept([0.1, 1.0], exclusive=False)},
    )
)
register(
    Method(
        name="preferred_ft",
        label="Preferred-FT (epochs)",
        colour="tab:olive",
        swept="epochs",
        data=PAIRS,
        family="reference-free",
        loss=LOSSES + "preferred_ft_loss",
        settings_from="dpo",
        chosen_only=True,
        section={"epochs": swept([1], minimum=1, exclusive=False, kind="integer")},
    )
)
register(
    Method(
        name="best_of_n",
        label="Best-of-N (N; KL: the bound)",
        colour="tab:gray",
        swept="n",
        data=NOTHING,
        family="sampling",
        section={
            "n": swept(
                [4, 16, 64],
                "swept; all values share one pool of max(n) samples per prompt",
                minimum=1,
                exclusive=False,
                kind="integer",
            )
        },
    )
)
# Noisy labels
register(
    Method(
        name="dpo_noisy",
        label="DPO, noisy labels (rate)",
        colour="tab:cyan",
        swept="rate",
        data=PAIRS,
        family="noisy labels",
        loss=LOSSES + "dpo_loss",
        needs_reference=True,
        settings_from="dpo",
        noisy_labels=True,
        section={"rate": NOISE_RATE, **NOISE},
    )
)
register(
    Method(
        name="cdpo_noisy",
        label="conservative DPO, noisy labels (rate)",
        colour="tab:pink",
        swept="rate",
        data=PAIRS,
        family="noisy labels",
        loss=LOSSES + "conservative_dpo_loss",
        needs_reference=True,
        settings_from="dpo",
        noisy_labels=True,
        section={
            "rate": NOISE_RATE,
            **NOISE,
            "label_smoothing": number(0.2, minimum=0, exclusiveMaximum=0.5),
        },
    )
)
# The RLHF route
register(
    Method(
        name="ppo_rm",
        label="PPO, learned reward (target KL)",
        colour="tab:orange",
        swept="target_kl",
        data=ONLINE,
        module="ppo",  # with a value head: its own trainer
        family="online RL",
        settings_from="ppo",
        learned_reward=True,
        section={"target_kl": swept([2.0, 6.0])},
    )
)
# Best-choice data
register(
    Method(
        name="plackett_luce",
        label="Plackett-Luce on rankings (beta)",
        colour="gold",
        swept="beta",
        data=RANKINGS,
        family="rankings",
        step=S + "plackett_luce_step",
        needs_reference=True,
        settings_from="dpo",
        section={"beta": swept([0.1])},
    )
)
register(
    Method(
        name="dpo_ranked",
        label="DPO on the rankings' pairs (beta)",
        colour="navy",
        swept="beta",
        data=RANKED_PAIRS,
        family="rankings",
        loss=LOSSES + "dpo_loss",
        needs_reference=True,
        settings_from="dpo",
        section={"beta": swept([0.1])},
    )
)


# the losses that score each response of a pair on its own rather than only their margin
PER_RESPONSE = "DPO: per-response terms"
# TRL 1.16's DPOTrainer loss types (sigmoid and ipo above: dpo, ipo), f_divergence_type, and its
# reference-free trainers (CPO/SimPO, ORPO)
pairwise("slic", "SLiC hinge (beta)", "darkred", "slic_hinge_loss")
pairwise(
    "ipo_mean",
    "IPO, per-token mean log-ratios (tau)",
    "mediumpurple",
    "ipo_mean_loss",
    swept_key="tau",
    values=[0.05, 0.5],
)
pairwise(
    "exo",
    "EXO (beta)",
    "teal",
    "exo_loss",
    epsilon=number(1e-3, "EXO's label smoothing eps", exclusiveMinimum=0, exclusiveMaximum=1),
)
pairwise("nca", "NCA (beta)", "darkgoldenrod", "nca_loss", family=PER_RESPONSE)
pairwise(
    "robust_dpo",
    "robust DPO (beta)",
    "indigo",
    "robust_dpo_loss",
    epsilon=number(0.1, "the assumed rate of flipped labels", minimum=0, exclusiveMaximum=0.5),
)
pairwise("bco_pair", "BCO, pairs (beta)", "sienna", "bco_pair_loss", family=PER_RESPONSE)
pairwise("sppo_hard", "SPPO, hard labels (beta)", "crimson", "sppo_hard_loss", family=PER_RESPONSE)
pairwise("aot", "AOT (beta)", "steelblue", "aot_loss")
pairwise("aot_unpaired", "AOT, unpaired (beta)", "lightsteelblue", "aot_unpaired_loss")
pairwise("apo_zero", "APO-zero (beta)", "forestgreen", "apo_zero_loss", family=PER_RESPONSE)
pairwise("apo_down", "APO-down (beta)", "yellowgreen", "apo_down_loss", family=PER_RESPONSE)
pairwise(
    "discopop",
    "DiscoPOP (beta)",
    "magenta",
    "discopop_loss",
    tau=number(0.05, "the temperature of the logistic/exponential mix", exclusiveMinimum=0),
)
pairwise(
    "dpo_norm",
    "DPO, per-token mean log-ratios (beta)",
    "royalblue",
    "dpo_norm_loss",
    values=[1.0, 10.0],
)
pairwise(
    "fdpo_forward_kl",
    "f-DPO, forward KL (beta)",
    "darkcyan",
    "f_dpo_forward_kl_loss",
    family="f-DPO",
)
pairwise("fdpo_js", "f-DPO, Jensen-Shannon (beta)", "cadetblue", "f_dpo_js_loss", family="f-DPO")
pairwise(
    "fdpo_alpha",
    "f-DPO, alpha-divergence (beta)",
    "darkslateblue",
    "f_dpo_alpha_loss",
    family="f-DPO",
    alpha=number(0.5, "alpha of the alpha-divergence (1: the reverse KL, DPO)", exclusiveMinimum=0),
)
pairwise(
    "simpo",
    "SimPO (beta)",
    "orangered",
    "simpo_loss",
    family="reference-free",
    needs_reference=False,
    values=[2.0, 10.0],
    gamma=number(1.0, "the target margin of the length-normalised rewards", minimum=0),
)
pairwise(
    "cpo",
    "CPO (beta)",
    "chocolate",
    "cpo_loss",
    family="reference-free",
    needs_reference=False,
    alpha=number(1.0, "weight of the NLL term on the chosen response", minimum=0),
)
pairwise(
    "orpo",
    "ORPO (lambda)",
    "deeppink",
    "orpo_loss",
    family="reference-free",
    needs_reference=False,
    swept_key="lam",
    values=[0.1, 1.0],
)

# Online, without a value head, each on groups of its own samples per prompt (stages.online)
online(
    "grpo", "GRPO, true reward (beta)", "firebrick", S + "GRPO", swept([0.04, 0.2], exclusive=False)
)
online(
    "rloo", "RLOO, true reward (beta)", "salmon", S + "RLOO", swept([0.05, 0.2], exclusive=False)
)
online(
    "online_dpo",
    "online DPO, true reward (beta)",
    "mediumblue",
    S + "ONLINE_DPO",
    swept(BETAS),
    group_size=2,
)

# KTO: unpaired desirable and undesirable samples (each prompt's above and below its median)
register(
    Method(
        name="kto",
        label="KTO (beta)",
        colour="darkorange",
        swept="beta",
        data=UNPAIRED,
        family="unpaired",
        step=S + "kto_step",
        needs_reference=True,
        settings_from="dpo",
        section={
            "beta": swept(BETAS),
            "desirable_weight": number(1.0, "lambda_D", exclusiveMinimum=0),
            "undesirable_weight": number(1.0, "lambda_U", exclusiveMinimum=0),
        },
    )
)
