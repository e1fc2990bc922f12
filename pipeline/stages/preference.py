"""Stage `train_pairwise`: a policy trained on the preference pairs with one pairwise loss.

Every offline method of the catalogue (pipeline.methods): the slides' DPO and Pairwise Cringe, the
DPO paper's other baselines, the noisy-label study, best-choice data (Plackett-Luce on rankings,
DPO on the same rankings' pairs), TRL's DPO loss family, f-DPO, the reference-free losses, KTO on
unpaired samples, and any method an extension registers. Each is a pure loss fed by its
arguments' names (`loss_step`) or a step of its own (Cringe, Plackett-Luce, KTO).
Starts from pi_ref (or, with policy.lora, from adapters on it). Each step takes a batch of
(prompt, chosen, rejected) token ids, or of (prompt, rank0, ..., rank3), and runs every response
through the policy in one forward pass; the
DPO family reads pi_ref's log-probs from the cached `reference` table. Dropout is off so that
log-probs are those of the policy itself.
Every `reward_every` steps and at the end, the policy samples one completion for `reward_prompts`
training prompts and the ground-truth reward scores them (`sample_reward` in the metrics).
"""

import inspect
from itertools import combinations

import pandas as pd
import torch

from pipeline import cli, io
from pipeline.batching import (
    PAIR_COLUMNS,
    Epochs,
    reference_column,
    response_batch,
    response_columns,
)
from pipeline.checkpoint import Checkpoint
from pipeline.config import Pairwise, Trainer, borrow, given, record
from pipeline.distributed import SINGLE, World, accumulate, setup, wrap
from pipeline.logs import get_logger
from pipeline.loop import (
    Run,
    Tracker,
    Trajectory,
    finish_job,
    generators,
    make_optimizer,
    set_lr,
    start_job,
    warmup_constant,
)
from pipeline.lora import adapt, trainable
from pipeline.methods import RANKED_PAIRS, Method, method, resolve
from pipeline.models import autocast, device, load_causal_lm, train_mode
from pipeline.noise import apply_noise
from pipeline.paths import policy_id
from pipeline.rewards import make_scorer
from pipeline.rollout import rollout
from pipeline.safe_loading import load_tokenizer
from pipeline.settings import read, rest
from pipeline.steps import TENSORS, loss_step

log = get_logger("train_pairwise")


@record
class Settings(Pairwise, Trainer):
    """The `train_pairwise` rule's settings: the method's config section on top of the section it
    takes its optimiser settings from (dpo's, cringe's), what every trainer borrows, and the reward
    monitor's keys."""

    method: str = given("the method record (pipeline.methods) that says what it trains on and with")
    seed: int = given(
        "the job's seed, one of train.seeds: the data order, label noise, the monitor's samples,"
        " Cringe's token draws"
    )
    round: int = given("of an iterated method (rounds.smk): its tracker's run is named after it", 1)
    batch_order: borrow("train.batch_order")
    reward_prompts: borrow("train.reward_prompts")
    reward_every: borrow("train.reward_every")
    # the method's own: its swept key and what its loss or step reads by name (beta, tau, k, ...),
    # and for the noisy-label methods the noise's rate and mode
    own: dict = rest()

    @property
    def swept(self):
        """This job's value of the key the method's sweep runs over (its own, or e.g. epochs)."""
        key = method(self.method).swept
        return self.own[key] if key in self.own else getattr(self, key)


def ranking_pairs(rankings: pd.DataFrame, ref: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The C(K, 2) pairs of each ranking (the better-ranked response chosen), with pi_ref's
    log-probs: the 6-pair view of exactly the data the Plackett-Luce loss sees."""
    k = len(response_columns(rankings))
    pairs, refs = [], []
    for i, j in combinations(range(k), 2):
        pairs.append(
            pd.DataFrame(
                {
                    "prompt_id": rankings["prompt_id"],
                    "prompt_ids": rankings["prompt_ids"],
                    "chosen_ids": rankings[f"rank{i}_ids"],
                    "rejected_ids": rankings[f"rank{j}_ids"],
                }
            )
        )
        refs.append(
            pd.DataFrame({"ref_chosen": ref[f"ref_rank{i}"], "ref_rejected": ref[f"ref_rank{j}"]})
        )
    return pd.concat(pairs, ignore_index=True), pd.concat(refs, ignore_index=True)


NOISE = ("rate", "mode")  # the noisy-label methods' own settings (pipeline.noise)


def check_settings(loss, p: Settings) -> None:
    """Refuse, before any step, a loss whose settings the method's section does not hold, and
    a setting that neither the loss nor the label noise reads."""
    wanted = [n for n in inspect.signature(loss).parameters if n not in TENSORS]
    missing = [n for n in wanted if n not in p.own]
    if missing:
        raise ValueError(
            f"{p.method}: its loss {loss.__name__} asks for {missing}, which its config"
            " section does not hold"
        )
    noise = NOISE if method(p.method).noisy_labels else ()
    unread = sorted(set(p.own) - set(wanted) - set(noise) - {method(p.method).swept})
    if unread:
        raise ValueError(
            f"{p.method}: setting(s) {unread} are read by neither its loss"
            f" {loss.__name__} nor its trainer"
        )


def step_function(record: Method):
    """The step that trains a method: its own, or the one its pure loss is fed by."""
    return resolve(record.step) if record.step else loss_step(resolve(record.loss))


def train(
    model,
    tok,
    pairs: pd.DataFrame,
    ref: pd.DataFrame | None,
    p: Settings,
    scorer,
    ckpt: Checkpoint | None = None,
    world: World = SINGLE,
    tracker: Tracker | None = None,
    points: Trajectory | None = None,
) -> pd.DataFrame:
    """Train in place; `ref` holds pi_ref's log-probs (DPO) or is None (Cringe needs none).
    With `ckpt`, resume from its last checkpoint and write one every `ckpt.every` steps; with
    `points`, save the policy at its fractions of the run.
    Under torchrun, data-parallel; the main process alone monitors the reward and checkpoints."""
    dev = next(model.parameters()).device
    # the data order; the reward monitor's samples (the main process's); Cringe's token draws
    gen, sample_gen, token_gen = generators(p.seed, world, dev)
    monitor = [list(x) for x in pairs.drop_duplicates("prompt_id")["prompt_ids"]][
        : p.reward_prompts
    ]
    epochs = Epochs(pairs["prompt_id"], p.batch_order, p.batch_size, gen)
    total = epochs.steps * p.epochs
    opt = make_optimizer(trainable(model), p.optimizer, p.lr)
    if points is not None:
        points.plan(total, model, tok)
    record = method(p.method)
    step_fn = step_function(record)
    if record.loss:
        check_settings(resolve(record.loss), p)
    columns = response_columns(pairs)[:1] if record.chosen_only else response_columns(pairs)
    if ref is not None:
        ref_logps = torch.tensor(
            ref[[reference_column(c) for c in columns]].to_numpy().T, dtype=torch.float32
        )
    train_mode(model, p.gradient_checkpointing, dropout=False)

    def reward_now():
        if not monitor or not world.main:
            return float("nan")
        _, scores = rollout(model, tok, monitor, scorer, p.max_new_tokens, sample_gen)
        return float(scores.mean())

    run = Run(p.method, total, model, opt, ckpt, world, tracker, points=points)
    if run.restored:
        epochs.restore(run.restored)
        sample_gen.set_state(run.restored["sample_gen"])
        token_gen.set_state(run.restored["token_gen"][world.rank])
    else:
        run.log({"step": 0, "sample_reward": reward_now()}, advance=False)
    ddp = wrap(model, world, p.compile)

    def pair_losses(rows):
        chunk = pairs.iloc[rows.numpy()]
        batch, index = response_batch(chunk, columns, tok.pad_token_id)
        with autocast(dev):
            batch_ref = None if ref is None else ref_logps[:, rows].to(dev)
            loss, stats = step_fn(
                ddp, batch.to(dev), index.to(dev), batch_ref, p.own, token_gen, chunk
            )
        stats = {k: v.sum() for k, v in stats.items()}
        # averaged per row like the statistics: 2 where a batch's pairs share no response
        stats["sequences_per_row"] = torch.tensor(float(len(batch.input_ids)), device=dev)
        return loss.sum(), stats

    def own_state():
        return epochs.state() | {
            "sample_gen": sample_gen.get_state(),
            "token_gen": world.gather(token_gen.get_state()),
        }  # each process draws its own

    while run.done < total:
        epoch, idx = epochs.rows(run.done)
        lr = warmup_constant(run.done, p.warmup_steps, p.lr)
        set_lr(opt, lr)
        opt.zero_grad(set_to_none=True)
        parts = world.micro_batches(idx, p.micro_batch_size, f"{p.method}.batch_size")
        row = {
            k: v / len(idx) for k, v in accumulate(ddp, parts, pair_losses, len(idx), world).items()
        }
        grad_norm = run.update(
            row["loss"], p.max_grad_norm, f"pairs {idx[:4].tolist()}... of epoch {epoch}"
        )
        run.done += 1
        row.update(step=run.done, epoch=epoch, lr=lr, grad_norm=grad_norm)
        if run.done % p.reward_every == 0 or run.done == total:
            row["sample_reward"] = reward_now()
        run.log(row)
        run.end_step(own_state)
    run.close()
    return pd.DataFrame(run.metrics)


def main(argv=None):
    args = cli.parse(
        __doc__,
        ["pairs", "reference", "policy", "checkpoint"],
        ["model", "metrics", "trajectory"],
        argv,
        optional=("reference", "checkpoint", "trajectory"),
    )
    p = read(Settings, args.params, "train_pairwise")
    record = method(p.method)
    if record.trainer != "preference":
        raise ValueError(f"{record.name} does not train on preference data ({record.data})")
    torch.manual_seed(p.seed)
    own_columns = {
        "pairs": PAIR_COLUMNS,
        "rankings": [],
        "unpaired": ["completion_ids", "desirable", "kl_completion_ids"],
    }[record.reads]
    pairs = io.read_parquet(args.pairs, ["prompt_id", "prompt_ids"] + own_columns)
    if pairs.empty:
        raise ValueError(f"{args.pairs}: the file holds no {record.reads}")
    if record.needs_reference:
        if not args.reference:
            raise ValueError(f"{record.name} needs --reference (pi_ref's log-probs of the pairs)")
        ref = io.read_parquet(
            args.reference, [reference_column(c) for c in response_columns(pairs)]
        )
        if len(ref) != len(pairs):
            raise ValueError(f"{args.reference} has {len(ref)} rows for {len(pairs)} pairs")
    else:  # the reference-free methods: Cringe, Unlikelihood, Preferred-FT, SimPO, ...
        ref = None
    if record.data == RANKED_PAIRS:
        pairs, ref = ranking_pairs(pairs, ref)
    if record.noisy_labels:  # flip labels, pi_ref's log-probs moving with them
        both = apply_noise(pd.concat([pairs, ref], axis=1), p.own["rate"], p.own["mode"], p.seed)
        pairs, ref = both[pairs.columns], both[ref.columns]
        log.info(
            "%s labels: %d of %d pairs flipped (rate %g)",
            p.own["mode"],
            both["flipped"].sum(),
            len(both),
            p.own["rate"],
        )
    world = setup()
    tok = load_tokenizer(args.policy, "policy")
    model = adapt(load_causal_lm(args.policy, "policy"), p.lora).to(device())
    if record.name == "cringe" and p.own["k"] > model.config.vocab_size - 1:
        raise ValueError(
            f"cringe.k = {p.own['k']} exceeds the vocabulary size minus one"
            f" ({model.config.vocab_size - 1})"
        )
    name = policy_id(record.name, p.swept, p.seed, p.round)
    job = start_job(args, p, world, name, record.settings, args.pairs, args.reference, args.policy)
    metrics = train(
        model, tok, pairs, ref, p, make_scorer(p.reward), job.ckpt, world, job.tracker, job.points
    )
    if not finish_job(job, model, tok, metrics, args):
        return
    first, last = metrics["sample_reward"].dropna().iloc[[0, -1]]
    log.info(
        "%s: sample reward %.3f -> %.3f over %d steps in %.1f s",
        p.method,
        first,
        last,
        int(metrics["step"].max()),
        metrics["seconds"].iloc[-1],
    )


if __name__ == "__main__":
    cli.run(main)
