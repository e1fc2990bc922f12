"""Percentile bootstrap intervals of a mean over evaluation samples.

A policy's evaluation draws several samples per held-out prompt, and a method's aggregate row pools
the evaluations of its training seeds. What varies between two runs is both: which prompts were
drawn (a prompt's samples share its difficulty, so they are resampled together: a cluster
bootstrap) and the training run itself (its seed, the order of its batches, a CPU's rounding).
With S >= 2 seeds a replicate is a two-level bootstrap: draw S seeds with replacement, then, for
each drawn seed, P prompts with replacement from that seed's evaluation; the replicate's mean is
sum of the drawn prompts' sample sums / sum of their sample counts. With one seed only the prompts
are resampled, and the interval covers the prompts alone (`ci_over`).

The draws depend only on (S, P, n_boot, seed), so every group with the same number of seeds and
prompts is resampled with the same indices: the replicates of two policies evaluated on the same
prompts are paired, and a difference of their means has the narrower interval it deserves.
"""

import numpy as np
import pandas as pd

LEVEL = 95.0


def ci_over(n_seeds: int) -> str:
    """What a row's interval resamples: `prompts`, or `seeds+prompts` with two seeds or more."""
    return "prompts" if n_seeds < 2 else "seeds+prompts"


def prompt_sums(samples: pd.DataFrame, column: str, prompt_ids: np.ndarray) -> np.ndarray:
    """(P, 2): the sum of `column` and the number of samples of each prompt, in `prompt_ids`
    order (0, 0 for a prompt without samples)."""
    grouped = samples.groupby("prompt_id")[column].agg(["sum", "count"])
    return grouped.reindex(prompt_ids, fill_value=0).to_numpy(dtype=float)


def draw(n_seeds: int, n_prompts: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Replicate indices: seeds (n_boot, S) and, within each drawn seed, prompts (n_boot, S, P).
    With one seed, the seed index is always 0 and only prompts are resampled."""
    rng = np.random.default_rng(seed)
    seeds = (
        rng.integers(0, n_seeds, size=(n_boot, n_seeds))
        if n_seeds > 1
        else np.zeros((n_boot, 1), dtype=int)
    )
    prompts = rng.integers(0, n_prompts, size=(n_boot, n_seeds, n_prompts))
    return seeds, prompts


def replicate_means(stats: np.ndarray, seeds: np.ndarray, prompts: np.ndarray) -> np.ndarray:
    """(n_boot,) bootstrap means from per-seed prompt sums `stats` (S, P, 2) and the indices that
    `draw` gives."""
    drawn = stats[seeds[:, :, None], prompts]  # (n_boot, S, P, 2)
    return drawn[..., 0].sum((1, 2)) / drawn[..., 1].sum((1, 2))


def replicates(per_seed: list[pd.DataFrame], column: str, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot,) bootstrap means of `column` over the evaluations of one policy's seeds."""
    prompt_ids = np.unique(np.concatenate([s["prompt_id"].to_numpy() for s in per_seed]))
    stats = np.stack([prompt_sums(s, column, prompt_ids) for s in per_seed])
    return replicate_means(stats, *draw(len(per_seed), len(prompt_ids), n_boot, seed))


def interval(reps: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap replicates, ignoring undefined (NaN) ones."""
    reps = reps[np.isfinite(reps)]
    if len(reps) == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(reps, [(100 - LEVEL) / 2, (100 + LEVEL) / 2])
    return float(lo), float(hi)
