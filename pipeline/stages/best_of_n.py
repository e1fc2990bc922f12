"""Stage `best_of_n`: the best of N samples of pi_ref under the true reward, for each N swept.

On the evaluation prompts, pi_ref draws max(N) pure samples per prompt, the true classifier scores
them all, and for each N the policy "Best-of-N" answers with the highest-scoring of the prompt's
first N samples (the pools are nested, so the N's are compared on the same draws). There is no
trained model: the stage writes, per N, the three files the `evaluate` stage writes for a policy
(results/eval/best_of_n/<N>/seed<s>/), one sample per prompt, and the whole pool's scores
(`--pool`: prompt_id, sample_id, score, length; max(N) samples per prompt), from which
pipeline.stages.optimal estimates the optimal frontier.

KL: the closed form KL(pi_BoN || pi_ref) = log N - (N - 1) / N, exact for a reward without ties
and an upper bound in general (Beirami et al. 2024), is reported in `kl` (docs/methods.md says which
table rows carry a bound). It is not estimated from samples: the exact
sequence KL needs pi_BoN's per-token distribution, which has no closed form. `kl_k1` and the
reverse KL are left empty (NaN) rather than filled with a different quantity.
"""

import math

import numpy as np
import pandas as pd

from pipeline import cli, io
from pipeline.config import borrow, given, record
from pipeline.logs import get_logger
from pipeline.measures import distinct_2, draw, select_prompts
from pipeline.methods import method_setting
from pipeline.models import device, load_causal_lm
from pipeline.rewards import check_finite_scores, make_scorer
from pipeline.safe_loading import load_tokenizer
from pipeline.settings import read

log = get_logger("best_of_n")


@record
class Settings:
    """The `best_of_n` rule's settings: config section `best_of_n`'s N, with evaluate's prompts and
    batch size, sample.max_new_tokens, the reward that picks the best and scores it, and the job's
    seed."""

    n: method_setting("best_of_n", "n")
    n_prompts: borrow("evaluate.n_prompts")
    batch_size: borrow("evaluate.batch_size")
    max_new_tokens: borrow("sample.max_new_tokens")
    reward: borrow("reward")
    seed: int = given("the job's seed, one of train.seeds: the pool's random generator")


def kl_bound(n: int) -> float:
    """KL(pi_BoN || pi_ref) <= log N - (N - 1) / N, with equality when rewards never tie."""
    return math.log(n) - (n - 1) / n


def best_of(samples: pd.DataFrame, n: int) -> pd.DataFrame:
    """Per prompt, the highest-scoring of its first n samples (sample_id < n); the first on ties."""
    pool = samples[samples["sample_id"] < n]
    best = pool.loc[pool.groupby("prompt_id", sort=False)["score"].idxmax()]
    return best.assign(kl=kl_bound(n), kl_k1=np.nan, n=n).reset_index(drop=True)


def main(argv=None):
    args = cli.parse(__doc__, ["prompts", "policy"], ["evals", "pool"], argv, lists=("evals",))
    p = read(Settings, args.params, "best_of_n")
    prompts = select_prompts(args.prompts, p.n_prompts)
    tok = load_tokenizer(args.policy, "policy")
    policy = load_causal_lm(args.policy, "policy").to(device()).eval()
    samples = draw(policy, tok, prompts, max(p.n), p.batch_size, p.max_new_tokens, p.seed)
    texts = samples["text"].tolist()
    samples["score"] = check_finite_scores(make_scorer(p.reward)(texts), texts)
    io.write_parquet(samples[["prompt_id", "sample_id", "score", "length"]], args.pool)
    if len(args.evals) != len(p.n):
        raise ValueError(f"--evals: {len(args.evals)} folders for best_of_n.n = {p.n}")
    for n, out in zip(p.n, args.evals):
        best = best_of(samples, n)
        summary = {
            "n": len(best),
            "n_prompts": len(prompts),
            "sentiment": best["score"].mean(),
            "kl": kl_bound(n),
            "kl_source": "closed-form bound log N - (N-1)/N",
            "length": best["length"].mean(),
            "distinct_2": distinct_2(best["completion_ids"].tolist()),
        }
        io.write_parquet(best, f"{out}/samples.parquet")
        io.write_parquet(
            best[["prompt_id", "sample_id"]].assign(kl_reverse=np.nan), f"{out}/reverse_kl.parquet"
        )
        io.write_json(summary, f"{out}/summary.json")
        log.info(
            "best of %d: sentiment %.3f, KL bound %.2f, length %.1f",
            n,
            summary["sentiment"],
            summary["kl"],
            summary["length"],
        )


if __name__ == "__main__":
    cli.run(main)
