"""The optimal frontier pi*, the matched-KL comparison and intervals that cover the seeds."""

import math

import numpy as np
import pandas as pd
import pytest
from conftest import fake_evaluation

from pipeline.bootstrap import ci_over, interval, replicates
from pipeline.frontiers import (
    beta_grid,
    compare,
    frontier_at,
    optimal_per_prompt,
    optimal_weights,
)
from pipeline.settings import read
from pipeline.stages.compare import COLUMNS, Settings, build_comparison
from pipeline.stages.optimal import optimal_frontier
from pipeline.stages.table import build_table

# a toy prompt with three responses: pi_ref's probabilities and the true reward of each
P_REF = np.array([0.5, 0.25, 0.25])
REWARD = np.array([0.2, 0.9, 0.5])


def closed_form(p, r, beta):
    """pi* = p exp(r / beta) / Z over a finite response set, and its reward and both KLs."""
    star = p * np.exp(r / beta)
    star /= star.sum()
    return {
        "sentiment": (star * r).sum(),
        "kl": (star * np.log(star / p)).sum(),
        "kl_reverse": (p * np.log(p / star)).sum(),
    }


@pytest.mark.parametrize("beta", [0.05, 0.3, 2.0])
def test_pi_star_is_exact_on_a_pool_that_holds_pi_ref_in_proportion(beta):
    """Four samples [y0, y0, y1, y2] are pi_ref exactly: the self-normalised estimate is pi*."""
    pool = REWARD[[0, 0, 1, 2]][None, :]
    est = optimal_per_prompt(pool, beta)
    for key, value in closed_form(P_REF, REWARD, beta).items():
        assert est[key][0] == pytest.approx(value, abs=1e-12), key


def test_pi_star_converges_to_the_closed_form_from_samples_of_pi_ref():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(6))
    r = rng.random(6)
    n = 20_000
    pools = r[rng.choice(6, size=(4, n), p=p)]  # 4 prompts, the same toy distribution
    for beta in (0.1, 0.5):
        est, exact = optimal_per_prompt(pools, beta), closed_form(p, r, beta)
        assert est["sentiment"].mean() == pytest.approx(exact["sentiment"], abs=3e-3)
        assert est["kl"].mean() == pytest.approx(exact["kl"], abs=3e-3)
        assert est["kl"].mean() > 0.05  # not a trivially small KL


def test_the_kl_estimate_never_exceeds_log_n_and_reaches_it_as_beta_goes_to_zero():
    rng = np.random.default_rng(1)
    rewards = rng.random((50, 16))  # distinct rewards: one sample takes all the weight at beta -> 0
    for beta in (1e-4, 0.01, 0.1, 1.0, 10.0):
        est = optimal_per_prompt(rewards, beta)
        assert (est["kl"] <= math.log(16) + 1e-12).all() and (est["kl"] >= -1e-12).all()
    sharp = optimal_per_prompt(rewards, 1e-6)
    assert sharp["kl"] == pytest.approx(np.full(50, math.log(16)))
    assert sharp["ess"] == pytest.approx(np.ones(50))
    assert sharp["sentiment"] == pytest.approx(rewards.max(1))  # pi* -> the best of the N


def test_beta_inf_is_pi_ref_with_uniform_weights_and_an_ess_of_n():
    rewards = np.array([[0.1, 0.4, 0.7, 0.9]])
    est = optimal_per_prompt(rewards, np.inf)
    assert est["kl"][0] == 0 and est["kl_reverse"][0] == 0 and est["ess"][0] == 4
    assert est["sentiment"][0] == pytest.approx(rewards.mean())
    assert beta_grid(0.1, 1.0, 3).tolist() == pytest.approx([0.1, math.sqrt(0.1), 1.0, np.inf])


def test_effective_sample_size_is_one_over_the_sum_of_squared_weights():
    rewards = np.array([[1.0, 1.0, 0.0, 0.0]])
    assert optimal_per_prompt(rewards, 1e-6)["ess"][0] == pytest.approx(2.0)  # two tied best
    w = optimal_weights(rewards, 0.5)[0]
    assert w == pytest.approx(np.array([math.e, math.e, 1, 1]) ** 2 / (2 * math.e**2 + 2))
    assert optimal_per_prompt(rewards, 0.5)["ess"][0] == pytest.approx(1 / (w**2).sum())


def test_the_frontier_table_carries_the_ess_and_pool_size():
    rng = np.random.default_rng(2)
    pool = pd.DataFrame(
        {
            "prompt_id": np.repeat(np.arange(20), 8),
            "sample_id": np.tile(np.arange(8), 20),
            "score": rng.random(160),
        }
    )
    rows = optimal_frontier(pool, beta_grid(0.01, 10, 5), n_boot=200, seed=0)
    assert rows["kind"].eq("optimal").all() and rows["pool_size"].eq(8).all()
    assert rows["ess"].between(1, 8).all() and rows["ess"].iloc[-1] == 8
    assert rows["kl"].is_monotonic_decreasing and rows["sentiment"].is_monotonic_decreasing
    assert (rows["sentiment_lo"] <= rows["sentiment"]).all() and (
        rows["sentiment"] <= rows["sentiment_hi"]
    ).all()
    with pytest.raises(ValueError, match="samples per prompt"):
        optimal_frontier(pool.iloc[1:], beta_grid(0.01, 10, 5), n_boot=200, seed=0)


def test_interpolation_between_points_sorted_by_kl_and_no_extrapolation():
    kl, reward = np.array([3.0, 1.0, 2.0]), np.array([0.7, 0.5, 0.9])  # given unsorted
    got = frontier_at(kl, reward, np.array([1.5]))
    assert got[0] == pytest.approx(0.7)
    assert frontier_at(kl, reward, np.array([2.5]))[0] == pytest.approx(0.8)
    assert frontier_at(kl, reward, np.array([1.0]))[0] == pytest.approx(0.5)  # the ends count
    assert frontier_at(kl, reward, np.array([3.0]))[0] == pytest.approx(0.7)
    assert np.isnan(frontier_at(kl, reward, np.array([0.99]))[0])
    assert np.isnan(frontier_at(kl, reward, np.array([3.01]))[0])
    # replicates: one frontier per row, each read at its own KL
    reps = frontier_at(
        np.array([[1.0, 3.0], [2.0, 4.0]]), np.array([[0.0, 1.0], [0.0, 1.0]]), np.array([2.0, 1.0])
    )
    assert reps[0] == pytest.approx(0.5) and np.isnan(reps[1])


def series(kl, sentiment, name="ppo"):
    kl, sentiment = np.array(kl), np.array(sentiment)
    return {
        "name": name,
        "round": 1,
        "n_seeds": 1,
        "kl": kl,
        "sentiment": sentiment,
        "kl_reps": np.tile(kl, (50, 1)),
        "sentiment_reps": np.tile(sentiment, (50, 1)),
    }


def point(kl, sentiment, spread=0.0):
    reps = np.linspace(-spread, spread, 50)
    return {
        "n_seeds": 1,
        "kl": kl,
        "sentiment": sentiment,
        "kl_reps": np.full(50, kl),
        "sentiment_reps": sentiment + reps,
    }


def test_a_point_inside_the_range_gets_the_difference_and_outside_it_says_so():
    s = series([2.0, 6.0], [0.6, 0.8])
    inside = compare(point(5.0, 0.9, spread=0.01), s)
    assert inside["against_sentiment"] == pytest.approx(0.75)
    assert inside["difference"] == pytest.approx(0.15)
    assert (
        inside["difference_lo"] < 0.15 < inside["difference_hi"] and inside["verdict"] == "better"
    )
    assert inside["boot_defined"] == 1.0 and inside["ci_over"] == "prompts"
    tied = compare(point(4.0, 0.7, spread=0.05), s)
    assert tied["verdict"] == "no clear difference"
    outside = compare(point(7.0, 0.9), s)
    assert outside["verdict"] == "outside range" and "difference" not in outside
    assert (outside["against_kl_min"], outside["against_kl_max"]) == (2.0, 6.0)
    assert compare(point(1.0, 0.5), s)["verdict"] == "outside range"  # below the range too


def test_beyond_the_optimum_s_reliable_range_its_last_point_is_a_lower_bound():
    """The optimal reward cannot fall as the KL budget grows: a point past pi*'s last reliable
    KL is compared with pi* there, and only `worse` can follow from it."""
    optimum = series([0.0, 1.0, 2.0], [0.6, 0.85, 0.9], name="optimal") | {"monotone": True}
    below = compare(point(5.0, 0.75, spread=0.01), optimum)
    assert below["read_as"] == "lower bound" and below["against_sentiment"] == 0.9
    assert below["difference"] == pytest.approx(-0.15) and below["verdict"] == "worse"
    above = compare(point(5.0, 0.95, spread=0.01), optimum)
    assert above["verdict"] == "no clear difference"  # above a lower bound proves nothing
    inside = compare(point(1.5, 0.8, spread=0.01), optimum)
    assert inside["read_as"] == "interpolated" and inside["against_sentiment"] == pytest.approx(
        0.875
    )
    assert compare(point(5.0, 0.75), series([0.0, 2.0], [0.6, 0.9]))["verdict"] == "outside range"


def folders(root, policies):
    return {pid: root / pid for pid in policies}


def fake_eval(folder, sentiment, kl, seed=0):
    fake_evaluation(folder, sentiment, kl, seed, n_prompts=30)


def test_two_seeds_that_disagree_widen_the_interval_beyond_the_prompts_alone(tmp_path):
    """The same policy trained twice lands at 0.70 and 0.80: resampling the prompts of the pooled
    samples alone misses that spread; the two-level bootstrap (seeds, then prompts) does not."""
    fake_eval(tmp_path / "dpo/0.1/seed0", 0.70, 5.0, seed=0)
    fake_eval(tmp_path / "dpo/0.1/seed1", 0.80, 5.0, seed=1)
    per_seed = [pd.read_parquet(tmp_path / f"dpo/0.1/seed{s}/samples.parquet") for s in (0, 1)]
    two_level = interval(replicates(per_seed, "score", 1000, 0))
    prompts_only = interval(replicates([pd.concat(per_seed)], "score", 1000, 0))
    assert two_level[1] - two_level[0] > 2 * (prompts_only[1] - prompts_only[0])
    assert two_level[0] < 0.75 < two_level[1]
    table = build_table(folders(tmp_path, ["dpo/0.1/seed0", "dpo/0.1/seed1"]), n_boot=1000, seed=0)
    agg = table[table["kind"] == "aggregate"].iloc[0]
    assert agg["ci_over"] == "seeds+prompts" and agg["n_seeds"] == 2
    assert (agg["sentiment_lo"], agg["sentiment_hi"]) == pytest.approx(two_level)
    assert ci_over(1) == "prompts"


def test_the_one_seed_table_says_its_intervals_cover_prompts_only(tmp_path):
    fake_eval(tmp_path / "sft", 0.6, 0.0)
    fake_eval(tmp_path / "dpo/0.1/seed0", 0.8, 5.0)
    table = build_table(folders(tmp_path, ["sft", "dpo/0.1/seed0"]), n_boot=200, seed=0)
    assert table["ci_over"].tolist() == ["prompts"] * 3


@pytest.fixture
def hand_made(tmp_path):
    """Five policies' evaluations made by hand, pi_ref's and pi*'s pool: (folders, pool, params),
    params as the comparison rule passes them."""
    fake_eval(tmp_path / "sft", 0.60, 0.0)
    for method, value, sentiment, kl in [
        ("dpo", "0.1", 0.85, 8.0),
        ("dpo", "1.0", 0.75, 4.0),
        ("ppo", "2.0", 0.62, 1.0),
        ("ppo", "6.0", 0.72, 6.0),
        ("cringe", "0.0", 0.70, 5.0),
    ]:
        fake_eval(tmp_path / f"{method}/{value}/seed0", sentiment, kl, seed=hash(value) % 100)
    policies = [
        "sft",
        "dpo/0.1/seed0",
        "dpo/1.0/seed0",
        "cringe/0.0/seed0",
        "ppo/2.0/seed0",
        "ppo/6.0/seed0",
    ]
    rng = np.random.default_rng(3)
    pool = pd.DataFrame(
        {
            "prompt_id": np.repeat(np.arange(30), 64),
            "sample_id": np.tile(np.arange(64), 30),
            "score": rng.random(30 * 64),
        }
    )
    params = {
        "bootstrap": 300,
        "seed": 0,
        "beta_min": 0.01,
        "beta_max": 10.0,
        "n_beta": 20,
        "min_ess": 8,
        "policies": policies,
        "extensions": [],
    }
    return folders(tmp_path, policies), pool, params


def test_comparison_on_hand_made_evaluations(hand_made):
    evals, pool, params = hand_made
    comp = build_comparison(evals, pool, read(Settings, params, "comparison"))
    assert list(comp.columns) == COLUMNS
    table = build_table(evals, n_boot=300, seed=0)
    agg = table[table["kind"] == "aggregate"].set_index(["method", "value"])
    # cringe at its KL, read on DPO's and PPO's frontiers by hand
    cringe = comp[comp["method"] == "cringe"].set_index("against")
    assert set(cringe.index) == {
        "dpo",
        "ppo",
        "optimal",
    }  # Cringe has one point: no frontier of its own
    for other, lo, hi in [("dpo", 1.0, 0.1), ("ppo", 2.0, 6.0)]:
        xs, ys = (
            agg.loc[(other, lo), ["kl", "sentiment"]],
            agg.loc[(other, hi), ["kl", "sentiment"]],
        )
        kl = agg.loc[("cringe", 0.0), "kl"]
        expected = np.interp(
            kl,
            sorted([xs["kl"], ys["kl"]]),
            [r["sentiment"] for r in sorted([xs, ys], key=lambda r: r["kl"])],
        )
        assert cringe.loc[other, "against_sentiment"] == pytest.approx(expected)
        assert cringe.loc[other, "difference"] == pytest.approx(
            agg.loc[("cringe", 0.0), "sentiment"] - expected
        )
    # DPO 0.1 at KL ~8 is beyond PPO's range [~1, ~6]: no number, the row says so
    far = comp[
        (comp["method"] == "dpo") & (comp["value"] == 0.1) & (comp["against"] == "ppo")
    ].iloc[0]
    assert far["verdict"] == "outside range" and np.isnan(far["difference"])
    # the same prompts' difficulty cancels in the paired difference: a narrower interval than
    # either point's own
    row = cringe.loc["ppo"]
    own = agg.loc[("cringe", 0.0)]
    assert row["difference_hi"] - row["difference_lo"] < own["sentiment_hi"] - own["sentiment_lo"]
    # pi_ref sits at KL 0, where pi* (beta = inf) is pi_ref itself; no method reaches KL 0
    ref = comp[comp["method"] == "pi_ref"].set_index("against")
    assert ref.loc["optimal", "verdict"] != "outside range"
    assert ref.loc["optimal", "against_sentiment"] == pytest.approx(pool["score"].mean())
    assert (ref.drop("optimal")["verdict"] == "outside range").all()
    # pi* (reliable up to ~1.75 nats here, ESS >= 8) lies far above PPO 2's point at KL ~1: a
    # gap to the optimum; the points beyond pi*'s range are read against its last point, a
    # lower bound, and are below even that
    gap = comp[(comp["against"] == "optimal") & (comp["method"] != "pi_ref")].set_index(
        ["method", "value"]
    )
    assert (
        gap.loc[("ppo", 2.0), "verdict"] == "worse" and gap.loc[("ppo", 2.0), "difference"] < -0.1
    )
    assert gap.loc[("ppo", 2.0), "read_as"] == "interpolated"
    beyond = gap.drop(("ppo", 2.0))
    assert (beyond["read_as"] == "lower bound").all() and (beyond["verdict"] == "worse").all()
    assert (beyond["against_kl_max"] < beyond["kl"]).all()


def test_the_leaderboard_reads_each_frontier_at_the_budgets_and_its_gap_to_pi_star(hand_made):
    from pipeline.stages import leaderboard

    evals, pool, params = hand_made
    params = read(leaderboard.Settings, params | {"budgets": [2.0, 5.0, 10.0]}, "leaderboard")
    board = leaderboard.build_leaderboard(evals, pool, params).set_index(["budget", "method"])
    assert set(board.index.get_level_values("method")) == {"dpo", "ppo"}  # Cringe: one point
    agg = build_table(evals, n_boot=300, seed=0)
    agg = agg[agg["kind"] == "aggregate"].set_index(["method", "value"])
    dpo = agg.loc["dpo"].sort_values("kl")
    at5 = np.interp(5.0, dpo["kl"], dpo["sentiment"])
    row = board.loc[(5.0, "dpo")]
    assert row["sentiment"] == pytest.approx(at5) and row["read_as"] == "interpolated"
    assert row["sentiment_lo"] < at5 < row["sentiment_hi"]
    # pi* is reliable only up to ~1.75 nats here: at 5 nats its last point, a lower bound
    assert row["optimal_read_as"] == "lower bound"
    assert row["gap"] == pytest.approx(at5 - row["optimal"]) and row["gap_hi"] < 0
    assert board.loc[(2.0, "ppo"), "rank"] == 1 and np.isnan(board.loc[(2.0, "dpo"), "sentiment"])
    assert board.loc[(10.0, "dpo"), "read_as"] == "outside range"  # no extrapolation
    assert board.loc[(5.0, "dpo"), "rank"] == 1 and board.loc[(5.0, "ppo"), "rank"] == 2


def test_points_along_a_run_are_rows_of_the_table_and_points_of_its_method_frontier(hand_made):
    """DPO 1.0 with a point at half its run, PPO 6.0 with one at a quarter of its run: each a row
    (and an aggregate row) of the table, with `at`, the fraction of its run; the table without
    such points keeps its columns. In the comparison the points join their method's frontier, so
    Cringe's point can be read against PPO's line through (1.0, 0.62), the quarter point and
    (6.0, 0.72)."""
    from pipeline.stages.table import COLUMNS as TABLE_COLUMNS

    evals, pool, params = hand_made
    assert list(build_table(evals, n_boot=50, seed=0).columns) == TABLE_COLUMNS
    root = evals["sft"].parent
    fake_eval(root / "dpo/1.0/seed0/at/0.5", 0.68, 1.5, seed=7)
    fake_eval(root / "ppo/6.0/seed0/at/0.25", 0.66, 2.5, seed=8)
    policies = [*params["policies"], "dpo/1.0/seed0/at/0.5", "ppo/6.0/seed0/at/0.25"]
    evals = folders(root, policies)
    table = build_table(evals, n_boot=50, seed=0)
    i = TABLE_COLUMNS.index("round") + 1
    assert list(table.columns) == TABLE_COLUMNS[:i] + ["at"] + TABLE_COLUMNS[i:]
    rows = table[table["kind"] == "policy"].set_index(["method", "value", "at"])
    assert rows.loc[("dpo", 1.0, 0.5), "kl"] < rows.loc[("dpo", 1.0, 1.0), "kl"]
    assert rows.loc[("ppo", 6.0, 0.25), "sentiment"] == pytest.approx(0.66, abs=0.05)
    assert table.loc[table["method"] == "pi_ref", "at"].isna().all()
    order = table[(table["kind"] == "policy") & (table["method"] == "dpo")]
    assert order[["value", "at"]].values.tolist() == [[0.1, 1.0], [1.0, 0.5], [1.0, 1.0]]

    comp = build_comparison(evals, pool, read(Settings, params | {"policies": policies}, "x"))
    assert "at" in comp.columns
    on_ppo = comp[(comp["method"] == "cringe") & (comp["against"] == "ppo")].iloc[0]
    ppo = table[(table["kind"] == "aggregate") & (table["method"] == "ppo")].sort_values("kl")
    assert on_ppo["against_sentiment"] == pytest.approx(
        np.interp(on_ppo["kl"], ppo["kl"], ppo["sentiment"])
    )
    assert len(ppo) == 3
    half = comp[(comp["method"] == "dpo") & (comp["at"] == 0.5) & (comp["against"] == "ppo")]
    assert half["verdict"].iloc[0] != "outside range"  # 1.5 nats: inside PPO's [~1, ~6]
