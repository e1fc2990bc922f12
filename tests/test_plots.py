"""The frontier figure: each point that averages seeds has its seeds' policies beside it, and
its legend stays inside the figure."""

import matplotlib.pyplot as plt
import pandas as pd

from pipeline.stages.plots import legend_below, seed_spread, seeds


def row(kind, method, seed, at, sentiment, kl, n_seeds=1):
    return {
        "kind": kind,
        "method": method,
        "value": 0.1,
        "seed": seed,
        "round": 1,
        "at": at,
        "n_seeds": n_seeds,
        "sentiment": sentiment,
        "kl": kl,
        "kl_reverse": kl,
    }


def two_seed_table():
    return pd.DataFrame(
        [
            row("policy", "dpo", 0, 0.5, 0.60, 1.0),
            row("policy", "dpo", 1, 0.5, 0.70, 1.4),
            row("policy", "dpo", 0, 1.0, 0.80, 3.0),
            row("policy", "dpo", 1, 1.0, 0.76, 2.6),
            row("policy", "cringe", 0, 1.0, 0.65, 2.0),  # one seed: its point is its policy
            row("aggregate", "dpo", None, 0.5, 0.65, 1.2, n_seeds=2),
            row("aggregate", "dpo", None, 1.0, 0.78, 2.8, n_seeds=2),
            row("aggregate", "cringe", None, 1.0, 0.65, 2.0, n_seeds=1),
        ]
    )


def test_the_spread_is_the_policies_behind_each_point_of_several_seeds():
    spread = seed_spread(two_seed_table())
    assert sorted(zip(spread["method"], spread["seed"], spread["at"])) == [
        ("dpo", 0, 0.5),
        ("dpo", 0, 1.0),
        ("dpo", 1, 0.5),
        ("dpo", 1, 1.0),
    ]


def test_a_one_seed_study_draws_no_spread():
    table = two_seed_table()
    one_seed = table[table["method"] == "cringe"]
    assert seed_spread(one_seed).empty
    fig, ax = plt.subplots()
    seeds(ax, seed_spread(one_seed), "kl")
    assert len(ax.collections) == 0
    plt.close(fig)


def test_each_seed_is_a_dot_at_its_own_kl_and_reward():
    fig, ax = plt.subplots()
    seeds(ax, seed_spread(two_seed_table()), "kl")
    (dots,) = ax.collections
    assert sorted(map(tuple, dots.get_offsets().tolist())) == [
        (1.0, 0.6),
        (1.4, 0.7),
        (2.6, 0.76),
        (3.0, 0.8),
    ]
    plt.close(fig)


def legend_rows(labels):
    """The rows of the frontier figure's legend, and whether it lies inside the figure."""
    fig, ax = plt.subplots(figsize=(13, 6.5))
    handles = [ax.plot([0, 1], [0, 1], label=label)[0] for label in labels]
    rows = legend_below(fig, handles, labels)
    (legend,) = fig.legends
    extent = legend.get_window_extent(fig.canvas.get_renderer())
    inside = 0 <= extent.x0 and extent.x1 <= fig.bbox.width
    plt.close(fig)
    return rows, inside


def test_a_legend_of_long_labels_takes_fewer_columns_and_stays_inside_the_figure():
    labels = [
        "pi* (estimated from 32 samples of pi_ref; drawn where ESS >= 8)",
        "one seed's policy (the means of 2 seeds have intervals)",
        "the optimum beyond KL 1.18: at least 0.864",
    ] + [f"a method with a long name, number {i} (beta)" for i in range(8)]
    rows, inside = legend_rows(labels)
    assert inside
    assert rows > 3  # 11 labels in 4 columns would be 3 rows, wider than the figure


def test_a_legend_that_fits_keeps_four_columns():
    assert legend_rows(["pi_ref (SFT): 0.563", "DPO (beta)", "Cringe (b)", "PPO"]) == (1, True)
