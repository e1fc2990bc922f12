"""Label noise: flip rates against binomial intervals, and the swap of exactly the flipped rows."""

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.noise import apply_noise, noisy_labels

N = 20_000
Z = 3.2905  # two-sided 99.9%: Phi(3.2905) = 0.9995


def assert_binomial_rate(flips: np.ndarray, p: float):
    """The fraction flipped lies in p +/- Z sqrt(p (1 - p) / n) (normal approximation)."""
    half = Z * math.sqrt(p * (1 - p) / len(flips))
    assert p - half <= flips.mean() <= p + half, (flips.mean(), p, half)


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_flip_mode_flips_each_label_with_probability_rate(rate):
    assert_binomial_rate(noisy_labels(N, rate, "flip", 0), rate)


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_outliers_mode_flips_half_of_the_coin_tossed_labels(rate):
    assert_binomial_rate(noisy_labels(N, rate, "outliers", 0), rate / 2)


@pytest.mark.parametrize("mode", ["flip", "outliers"])
def test_rate_zero_flips_nothing_and_the_seed_fixes_the_draw(mode):
    assert not noisy_labels(N, 0.0, mode, 0).any()
    first = noisy_labels(N, 0.3, mode, 7)
    assert np.array_equal(first, noisy_labels(N, 0.3, mode, 7))
    assert np.array_equal(first, noisy_labels(N, 0.3, mode, np.random.default_rng(7)))
    assert not np.array_equal(first, noisy_labels(N, 0.3, mode, 8))


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_rate_outside_zero_one_is_refused(rate):
    with pytest.raises(ValueError, match=f"rate = {rate}"):
        noisy_labels(10, rate, "flip", 0)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode = 'swap'"):
        noisy_labels(10, 0.1, "swap", 0)


def pair_table(n: int) -> pd.DataFrame:
    """The columns of the pairs stage plus the cached reference log-probs; chosen always wins."""
    return pd.DataFrame(
        {
            "prompt_id": range(n),
            "prompt_ids": [[1, i] for i in range(n)],
            "chosen_ids": [[100 + i, 7] for i in range(n)],
            "rejected_ids": [[200 + i] for i in range(n)],
            "chosen_score": [0.9] * n,
            "rejected_score": [0.1] * n,
            "chosen": [f"good {i}" for i in range(n)],
            "rejected": [f"bad {i}" for i in range(n)],
            "ref_chosen": [-1.0 - i for i in range(n)],
            "ref_rejected": [-2.0 - i for i in range(n)],
        }
    )


def test_apply_noise_swaps_exactly_the_flipped_rows():
    pairs = pair_table(200)
    original = pairs.copy(deep=True)
    out = apply_noise(pairs, 0.3, "flip", seed=3)
    flipped = out["flipped"].to_numpy()
    assert np.array_equal(flipped, noisy_labels(200, 0.3, "flip", 3)) and 0 < flipped.sum() < 200
    pd.testing.assert_frame_equal(pairs, original)  # the input is left alone
    pd.testing.assert_frame_equal(out.loc[~flipped, pairs.columns], pairs.loc[~flipped])
    for chosen, rejected in [
        ("chosen_ids", "rejected_ids"),
        ("chosen_score", "rejected_score"),
        ("chosen", "rejected"),
        ("ref_chosen", "ref_rejected"),
    ]:
        assert out.loc[flipped, chosen].tolist() == pairs.loc[flipped, rejected].tolist()
        assert out.loc[flipped, rejected].tolist() == pairs.loc[flipped, chosen].tolist()
    for same in ("prompt_id", "prompt_ids"):
        assert out[same].tolist() == pairs[same].tolist()
    assert (out["chosen_score"] < out["rejected_score"]).tolist() == flipped.tolist()


def test_apply_noise_refuses_a_chosen_column_without_its_rejected_twin():
    with pytest.raises(ValueError, match="'chosen_len' has no 'rejected_len'"):
        apply_noise(pair_table(4).assign(chosen_len=3), 0.5, "flip", seed=0)
