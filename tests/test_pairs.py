import numpy as np
import pandas as pd
import pytest

from pipeline.stages.pairs import make_pairs, make_unpaired


def scored(scores_per_prompt):
    rows = []
    for pid, scores in enumerate(scores_per_prompt):
        for sid, s in enumerate(scores):
            rows.append(
                {
                    "prompt_id": pid,
                    "sample_id": sid,
                    "prompt_ids": [1, pid],
                    "completion_ids": [10 + sid],
                    "completion": f"c{sid}",
                    "score": s,
                }
            )
    return pd.DataFrame(rows)


def test_six_pairs_per_prompt_chosen_has_the_higher_score():
    pairs, ties = make_pairs(scored([[0.1, 0.9, 0.5, 0.3], [0.2, 0.4, 0.6, 0.8]]))
    assert ties == 0
    assert pairs.groupby("prompt_id").size().tolist() == [6, 6]
    assert (pairs["chosen_score"] > pairs["rejected_score"]).all()
    first = pairs[pairs["prompt_id"] == 0].iloc[0]  # samples 0 (0.1) and 1 (0.9)
    assert list(first["chosen_ids"]) == [11] and list(first["rejected_ids"]) == [10]


def test_exact_ties_are_dropped_and_counted():
    pairs, ties = make_pairs(scored([[0.5, 0.5, 0.5, 0.7]]))
    assert ties == 3 and len(pairs) == 3
    assert (pairs.groupby("prompt_id").size() <= 6).all()


def test_nan_score_is_an_error_naming_the_row():
    with pytest.raises(ValueError, match="NaN at row 2"):
        make_pairs(scored([[0.1, 0.2, np.nan, 0.3]]))


def test_rankings_order_each_prompt_best_first_and_leave_out_prompts_with_a_tie():
    from pipeline.stages.pairs import make_rankings

    rankings = make_rankings(scored([[0.1, 0.9, 0.5, 0.3], [0.5, 0.5, 0.6, 0.8]]))
    assert rankings["prompt_id"].tolist() == [0]  # prompt 1 has a tie
    row = rankings.iloc[0]
    assert [list(row[f"rank{k}_ids"]) for k in range(4)] == [[11], [12], [13], [10]]
    assert [row[f"rank{k}_score"] for k in range(4)] == [0.9, 0.5, 0.3, 0.1]


def test_a_rankings_pairs_are_its_six_ordered_pairs_with_pi_refs_log_probs():
    from pipeline.stages.pairs import make_rankings
    from pipeline.stages.preference import ranking_pairs

    rankings = make_rankings(scored([[0.1, 0.9, 0.5, 0.3]]))
    ref = pd.DataFrame({f"ref_rank{k}": [-float(k)] for k in range(4)})
    pairs, pair_ref = ranking_pairs(rankings, ref)
    assert len(pairs) == 6 and len(pair_ref) == 6
    ranks = {11: 0, 12: 1, 13: 2, 10: 3}  # completion id -> rank
    for r, rr in zip(pairs.itertuples(), pair_ref.itertuples()):
        chosen, rejected = ranks[r.chosen_ids[0]], ranks[r.rejected_ids[0]]
        assert chosen < rejected
        assert (rr.ref_chosen, rr.ref_rejected) == (-chosen, -rejected)


def test_kto_labels_each_sample_against_its_prompts_median():
    # prompt 0: median 0.4 -> 0.9, 0.5 desirable, 0.1, 0.3 not; prompt 1: median 0.5 -> 0.5 left out
    table = make_unpaired(scored([[0.1, 0.9, 0.5, 0.3], [0.2, 0.5, 0.8]]))
    assert table["prompt_id"].tolist() == [0, 0, 0, 0, 1, 1]
    assert table["desirable"].tolist() == [False, True, True, False, False, True]
    assert [list(c) for c in table["completion_ids"]] == [[10], [11], [12], [13], [10], [12]]
    # beside each, the same-numbered sample of the next prompt (cyclically): never its own prompt's
    assert [list(c) for c in table["kl_completion_ids"]] == [[10], [11], [12], [10], [10], [12]]
