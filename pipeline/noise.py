"""Label noise for the robustness study: which preference pairs get their label flipped.

Two models of a noisy annotator, drawn for each pair independently:
- "flip": the label is flipped with probability rate.
- "outliers": with probability rate the annotator ignores the pair and answers with a fair coin;
  otherwise the label is kept. The coin agrees with the true label half the time, so a pair ends
  up flipped with probability rate / 2, and `rate` is the fraction of labels that carry no signal.
"""

import numpy as np
import pandas as pd

MODES = ("flip", "outliers")


def noisy_labels(n: int, rate: float, mode: str, generator_or_seed) -> np.ndarray:
    """(n,) bool, True where the pair's label is flipped. generator_or_seed: an int seed or a
    numpy Generator (drawn from, so it advances)."""
    if not 0 <= rate <= 1:
        raise ValueError(f"noise rate = {rate} must lie in [0, 1]")
    if mode not in MODES:
        raise ValueError(f"noise mode = {mode!r} is not one of {', '.join(MODES)}")
    rng = np.random.default_rng(generator_or_seed)
    hit = rng.random(n) < rate
    if mode == "flip":
        return hit
    return hit & (rng.random(n) < 0.5)  # the fair coin says "the other one" half the time


def apply_noise(pairs: pd.DataFrame, rate: float, mode: str, seed: int) -> pd.DataFrame:
    """A copy of the pair table with the chosen and rejected sides of the flipped rows exchanged.

    Every chosen column (chosen, chosen_ids, chosen_score, ref_chosen, ...) is swapped with its
    rejected twin, so a flipped row stays consistent: text, token ids, score and cached reference
    log-prob move together. Adds the bool column `flipped`.
    """
    flipped = noisy_labels(len(pairs), rate, mode, seed)
    out = pairs.copy()
    for chosen in [c for c in pairs.columns if "chosen" in c]:
        rejected = chosen.replace("chosen", "rejected")
        if rejected not in pairs.columns:
            raise ValueError(f"pair column {chosen!r} has no {rejected!r} to swap with")
        out[chosen] = pairs[chosen].where(~flipped, pairs[rejected])
        out[rejected] = pairs[rejected].where(~flipped, pairs[chosen])
    out["flipped"] = flipped
    return out
