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
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import pandas as pd
import torch

from pipeline import cli, io
from pipeline.batching import (
    PAIR_COLUMNS,
    epoch_order,
    reference_column,
    response_batch,
    response_columns,
)
from pipeline.checkpoint import Checkpoint, fingerprint
from pipeline.distributed import SINGLE, World, accumulate, setup, teardown, wrap
from pipeline.logprobs import forward_logits, forward_logprobs, next_token_logprobs, token_logprobs
from pipeline.logs import get_logger
from pipeline.loop import Run, Tracker, Trajectory, generators, save_policy, tracker_for
from pipeline.lora import Lora, adapt, trainable
from pipeline.losses import (
    ce_loss,
    cringe_gate,
    cringe_token_loss,
    kto_loss,
    kto_reference_point,
    pairwise_cringe_loss,
    plackett_luce_loss,
)
from pipeline.methods import RANKED_PAIRS, Method, method, policy_id, resolve
from pipeline.models import autocast, device, load_causal_lm, train_mode
from pipeline.noise import apply_noise
from pipeline.optim import make_optimizer, set_lr, warmup_constant
from pipeline.rewards import Reward, make_scorer
from pipeline.rollout import rollout
from pipeline.safe_loading import load_tokenizer
from pipeline.settings import read, rest

log = get_logger("train_pairwise")


@dataclass(frozen=True)
class Settings:
    """The `train_pairwise` rule's settings: the method's config section (on top of the section it
    takes its optimiser settings from), the reward monitor's keys and `train.tracking`."""

    method: str  # the method record (pipeline.methods) that says what it trains on and with
    epochs: int
    batch_size: int  # rows (pairs, rankings or samples) per optimizer step
    micro_batch_size: int | None  # rows per forward pass (accumulated); None: the batch
    batch_order: Literal["pair", "prompt"]  # rows shuffled, or prompts (their rows together)
    optimizer: Literal["adamw", "rmsprop"]
    lr: float  # reached after warmup, then constant (the DPO paper's schedule)
    warmup_steps: int
    max_grad_norm: float  # gradient clipping
    gradient_checkpointing: bool  # recompute activations in the backward pass: less memory
    compile: bool  # torch.compile the training forward pass
    seed: int  # the data order, label noise, the monitor's samples, Cringe's token draws
    checkpoint_every: int  # steps between checkpoints (0: none); a rerun resumes from the last
    trajectory: list[float]  # fractions of the run's steps at which the policy is also saved
    lora: Lora | None  # policy.lora: adapters trained instead of the weights (pipeline.lora)
    reward_prompts: int  # training prompts sampled to watch the true reward while training
    reward_every: int  # steps between those samples (and at the end)
    max_new_tokens: int  # of each monitor sample (sample.max_new_tokens)
    reward: Reward  # the true reward, which scores the monitor's samples
    extensions: list[str]  # modules registering methods of one's own (train.extensions)
    tracking: str  # where metrics go live besides metrics.csv (pipeline.loop.Tracker)
    tracking_dir: str
    round: int = 1  # of an iterated method (rounds.smk): its tracker's run is named after it
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


# A step gets the distinct responses' batch and the index (K, n) of each row's responses in it
# (pipeline.batching.response_batch); it returns per-row losses and per-row statistics,
# which the trainer sums and averages.
def sequence_logps(model, batch, index):
    """log pi(y|x) of each row's response in each column: (K, n)."""
    return token_logprobs(forward_logprobs(model, batch), batch).sum(-1)[index]


# What a pure pairwise loss may ask for by the name of an argument; any other name is a setting.
TENSORS = {f"{kind}_{side}" for side in ("chosen", "rejected") for kind in ("policy", "ref")} | {
    f"{side}_{kind}"
    for side in ("chosen", "rejected")
    for kind in ("length", "token_logps", "mask")
}


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


def loss_step(loss):
    """The step of a method given by a pure loss: the batch's log-probs, pi_ref's and the lengths
    passed to it by its arguments' names, its settings from the method's section. Logged: the
    implicit reward margin (log-ratio margin, times beta where the loss has one; without a
    reference, the log-prob margin) and how often it is positive."""
    wanted = list(inspect.signature(loss).parameters)

    def step(model, batch, index, ref, own, generator, chunk=None):
        token_logps = token_logprobs(forward_logprobs(model, batch), batch)
        lengths = batch.response_mask.sum(-1).to(token_logps.dtype)
        sides = ["chosen", "rejected"][: len(index)]
        tensors = {}
        for side, rows in zip(sides, index):
            tensors |= {
                f"policy_{side}": token_logps.sum(-1)[rows],
                f"{side}_length": lengths[rows],
                f"{side}_token_logps": token_logps[rows],
                f"{side}_mask": batch.response_mask[rows],
            }
        if ref is not None:
            tensors |= dict(zip([f"ref_{side}" for side in sides], ref))
        out = loss(**{n: tensors[n] if n in tensors else own[n] for n in wanted})
        if len(sides) == 1:
            return out, {}
        chosen, rejected = tensors["policy_chosen"].detach(), tensors["policy_rejected"].detach()
        if ref is not None:  # the implicit rewards, beta (log pi - log ref)
            scale = own["beta"] if "beta" in wanted else 1.0
            chosen, rejected = scale * (chosen - ref[0]), scale * (rejected - ref[1])
            stats = (
                {"reward_chosen": chosen, "reward_rejected": rejected} if "beta" in wanted else {}
            )
        else:
            stats = {}
        margin = chosen - rejected
        return out, stats | {"reward_accuracy": (margin > 0).float(), "reward_margin": margin}

    return step


def plackett_luce_step(model, batch, index, ref, own, generator, chunk=None):
    """The listwise DPO loss on each prompt's K responses, ranked best first (ref: K x B)."""
    logps = sequence_logps(model, batch, index).T
    loss = plackett_luce_loss(logps, ref.T, own["beta"])
    margin = (logps - ref.T)[:, :-1] - (logps - ref.T)[:, 1:]  # adjacent ranks' log-ratio margins
    return loss, {
        "reward_accuracy": (margin > 0).float().mean(-1).detach(),
        "reward_margin": margin.mean(-1).detach(),
    }


def cringe_step(model, batch, index, ref, own, generator, chunk=None):
    chosen, rejected = index
    logits = forward_logits(model, batch)
    token_logps = token_logprobs(next_token_logprobs(logits), batch)
    logps = token_logps.sum(-1)
    gate = cringe_gate(logps[chosen], logps[rejected], own["b"], own["tau"])
    ce = ce_loss(token_logps[chosen])
    # each pair draws its own positive tokens, also where pairs share their rejected response
    cr = cringe_token_loss(
        logits[rejected, :-1],
        batch.input_ids[rejected, 1:],
        batch.response_mask[rejected],
        own["k"],
        generator,
    )
    loss = pairwise_cringe_loss(gate, ce, cr, own["gate_ce"])
    margin = (logps[chosen] - logps[rejected]).detach()
    return loss, {
        "gate": gate.detach(),
        "ce": ce.detach(),
        "cringe": cr.detach(),
        "reward_accuracy": (margin > 0).float(),
        "reward_margin": margin,
    }


def kto_step(model, batch, index, ref, own, generator, chunk):
    """KTO on unpaired samples: each row's completion (index[0]), desirable or not
    (`chunk.desirable`), and beside it another prompt's response (index[1]), whose log-ratio
    estimates the reference point z0 over the (micro-)batch."""
    logps = sequence_logps(model, batch, index)
    desirable = torch.as_tensor(chunk["desirable"].to_numpy(), device=logps.device)
    z0 = kto_reference_point(logps[1], ref[1])
    loss = kto_loss(
        logps[0],
        ref[0],
        desirable,
        z0,
        own["beta"],
        own["desirable_weight"],
        own["undesirable_weight"],
    )
    reward = own["beta"] * (logps[0] - ref[0]).detach()
    return loss, {
        "reward": reward,
        "kl_reference_point": z0.expand_as(reward),
        "desirable_share": desirable.float(),
    }


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
    bs = p.batch_size
    steps_per_epoch = max(1, len(pairs) // bs)
    total = steps_per_epoch * p.epochs
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
    order, order_epoch = None, -1
    if run.restored:
        order, order_epoch = run.restored["order"], run.restored["order_epoch"]
        gen.set_state(run.restored["gen"])
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
        return {
            "order": order,
            "order_epoch": order_epoch,
            "gen": gen.get_state(),
            "sample_gen": sample_gen.get_state(),
            "token_gen": world.gather(token_gen.get_state()),
        }  # each process draws its own

    while run.done < total:
        epoch, pos = divmod(run.done, steps_per_epoch)
        if order_epoch != epoch:
            order, order_epoch = epoch_order(pairs["prompt_id"], p.batch_order, gen), epoch
        idx = order[pos * bs : (pos + 1) * bs]
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
    # per-process generator states: a checkpoint of another number of processes is stale
    ckpt = Checkpoint(
        args.checkpoint,
        p.checkpoint_every,
        fingerprint(
            args.params | {"processes": world.size}, args.pairs, args.reference, args.policy
        ),
    )
    name = policy_id(record.name, p.swept, p.seed, p.round)
    tracker = tracker_for(p, name) if world.main else None
    points = Trajectory(p.trajectory, f"{record.settings}.trajectory", args.trajectory, ckpt)
    metrics = train(model, tok, pairs, ref, p, make_scorer(p.reward), ckpt, world, tracker, points)
    teardown(world)
    if not world.main:
        return
    save_policy(model, tok, metrics, args.model, args.metrics, ckpt, points)
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
