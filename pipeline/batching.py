"""The batching that the pairwise trainers, the reward model and the `reference` stage share.

A pairs table has columns prompt_ids, chosen_ids, rejected_ids (a rankings table: prompt_ids,
rank0_ids, rank1_ids, ...), one row per pair (or ranking). A prompt's 6 pairs hold its 4
samples, so a batch runs each distinct (prompt, response) once and gathers every row's
log-probs or rewards from it by an index. Epochs visit the rows in a seeded order.
"""

import numpy as np
import pandas as pd
import torch

from pipeline.logprobs import left_pad

PAIR_COLUMNS = ["prompt_ids", "chosen_ids", "rejected_ids"]


def response_columns(table: pd.DataFrame) -> list[str]:
    """The response columns of a pairs (chosen, rejected) or rankings (rank0, rank1, ...) table."""
    return [c for c in table.columns if c.endswith("_ids") and c != "prompt_ids"]


def reference_column(response: str) -> str:
    """The column of pi_ref's log-probs of a response column: chosen_ids -> ref_chosen."""
    return "ref_" + response.removesuffix("_ids")


def distinct_responses(table: pd.DataFrame, columns: list[str]):
    """Each distinct (prompt, response) of the table's response columns once, in order of first
    appearance: (prompts, responses, index), where index[j, i] is the position of row i's
    response in column j. The pairs of a prompt share its samples, so there are up to 3x fewer
    sequences than responses (4 samples, 6 pairs), and a sequence's log-prob is the same in
    every pair it appears in."""
    seen: dict[tuple, int] = {}
    index = np.empty((len(columns), len(table)), dtype=np.int64)
    for j, column in enumerate(columns):
        for i, key in enumerate(zip(map(tuple, table["prompt_ids"]), map(tuple, table[column]))):
            index[j, i] = seen.setdefault(key, len(seen))
    prompts = [list(p) for p, _ in seen]
    responses = [list(r) for _, r in seen]
    return prompts, responses, torch.from_numpy(index)


def response_batch(chunk: pd.DataFrame, columns: list[str], pad_id: int):
    """The chunk's distinct responses in one left-padded batch, and index (K, n): the batch row of
    row i's response in column k. Columns: (chosen, rejected) for pairs, (rank0, rank1, ...) for
    rankings. A step's log-probs are the batch's, gathered by the index: the same loss and
    gradient as running every pair's two sequences, with each shared response run once."""
    prompts, responses, index = distinct_responses(chunk, columns)
    return left_pad(prompts, responses, pad_id), index


def pair_batch(chunk: pd.DataFrame, pad_id: int):
    return response_batch(chunk, ["chosen_ids", "rejected_ids"], pad_id)


def epoch_order(prompt_ids: pd.Series, by: str, generator: torch.Generator) -> torch.Tensor:
    """An epoch's order of the rows. "pair": a random permutation. "prompt": the prompts in a
    random order, each prompt's rows together, as the DPO paper's code batches its pairs; a
    batch then holds a few prompts' pairs, which share their responses."""
    if by == "pair":
        return torch.randperm(len(prompt_ids), generator=generator)
    codes, uniques = pd.factorize(prompt_ids)
    position = torch.empty(len(uniques), dtype=torch.long)
    position[torch.randperm(len(uniques), generator=generator)] = torch.arange(len(uniques))
    return torch.argsort(position[torch.from_numpy(codes)], stable=True)


class Epochs:
    """The rows each step trains on, `batch_size` at a time: every epoch a new `epoch_order`
    drawn from `generator`. `state()` goes into a checkpoint; `restore` (that state) resumes the
    order and the generator where the checkpoint left them."""

    def __init__(self, prompt_ids: pd.Series, by: str, batch_size: int, generator):
        self.prompt_ids, self.by, self.batch_size, self.gen = prompt_ids, by, batch_size, generator
        self.steps = max(1, len(prompt_ids) // batch_size)  # per epoch
        self.order, self.epoch = None, -1

    def restore(self, state: dict) -> None:
        self.order, self.epoch = state["order"], state["order_epoch"]
        self.gen.set_state(state["gen"])

    def rows(self, step: int) -> tuple[int, torch.Tensor]:
        """The epoch of step `step` (0-based) and the rows of its batch."""
        epoch, pos = divmod(step, self.steps)
        if self.epoch != epoch:
            self.order, self.epoch = epoch_order(self.prompt_ids, self.by, self.gen), epoch
        return epoch, self.order[pos * self.batch_size : (pos + 1) * self.batch_size]

    def state(self) -> dict:
        return {"order": self.order, "order_epoch": self.epoch, "gen": self.gen.get_state()}
