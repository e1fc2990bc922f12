"""Stage `train_pairwise`: a policy trained on the preference pairs with one pairwise loss.

The slides' methods: DPO and Pairwise Cringe. The DPO paper's other baselines: IPO, Unlikelihood
and Preferred-FT (SFT on the chosen responses). The noisy-label study: DPO (`dpo_noisy`) and
conservative DPO (`cdpo_noisy`) on pairs whose labels are flipped at `rate` (pipeline.noise).
Best-choice data: Plackett-Luce listwise DPO on the rankings (each prompt's samples, best first)
and, to compare at the same data, DPO on those rankings' pairs (`dpo_ranked`).
Starts from pi_ref. Each step takes a batch of (prompt, chosen, rejected) token ids, or of
(prompt, rank0, ..., rank3), and runs every response through the policy in one forward pass; the
DPO family reads pi_ref's log-probs from the cached `reference` table. Dropout is off so that log-probs are those of the policy itself.
Every `reward_every` steps and at the end, the policy samples one completion for `reward_prompts`
training prompts and the ground-truth reward scores them (`sample_reward` in the metrics).
"""

import time
from itertools import combinations

import pandas as pd
import torch

from pipeline import cli, io
from pipeline.batching import (PAIR_COLUMNS, epoch_order, reference_column, response_batch,
                               response_columns)
from pipeline.checkpoint import Checkpoint, fingerprint
from pipeline.distributed import SINGLE, World, accumulate, setup, teardown, wrap
from pipeline.logprobs import forward_logits, forward_logprobs, next_token_logprobs, token_logprobs
from pipeline.logs import get_logger, progress
from pipeline.losses import (ce_loss, conservative_dpo_loss, cringe_gate, cringe_token_loss,
                             dpo_loss, ipo_loss, pairwise_cringe_loss, plackett_luce_loss,
                             unlikelihood_loss)
from pipeline.methods import NEEDS_REFERENCE, RANKED
from pipeline.models import autocast, device, load_causal_lm, train_mode
from pipeline.safe_loading import load_tokenizer
from pipeline.noise import apply_noise
from pipeline.optim import check_finite, make_optimizer, set_lr, warmup_constant
from pipeline.rollout import rollout
from pipeline.score import make_scorer

log = get_logger("train_pairwise")


def ranking_pairs(rankings: pd.DataFrame, ref: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The C(K, 2) pairs of each ranking (the better-ranked response chosen), with pi_ref's
    log-probs: the 6-pair view of exactly the data the Plackett-Luce loss sees."""
    k = len(response_columns(rankings))
    pairs, refs = [], []
    for i, j in combinations(range(k), 2):
        pairs.append(pd.DataFrame({"prompt_id": rankings["prompt_id"],
                                   "prompt_ids": rankings["prompt_ids"],
                                   "chosen_ids": rankings[f"rank{i}_ids"],
                                   "rejected_ids": rankings[f"rank{j}_ids"]}))
        refs.append(pd.DataFrame({"ref_chosen": ref[f"ref_rank{i}"],
                                  "ref_rejected": ref[f"ref_rank{j}"]}))
    return pd.concat(pairs, ignore_index=True), pd.concat(refs, ignore_index=True)


# A step gets the distinct responses' batch and the index (K, n) of each row's responses in it
# (pipeline.batching.response_batch); it returns per-row losses and per-row statistics,
# which the trainer sums and averages.
def sequence_logps(model, batch, index):
    """log pi(y|x) of each row's response in each column: (K, n)."""
    return token_logprobs(forward_logprobs(model, batch), batch).sum(-1)[index]


def dpo_step(model, batch, index, ref, p, generator):
    """DPO, and conservative DPO when `label_smoothing` is set (the noisy-label study)."""
    chosen, rejected = sequence_logps(model, batch, index)
    if "label_smoothing" in p:
        loss, chosen_r, rejected_r = conservative_dpo_loss(chosen, rejected, ref[0], ref[1],
                                                           p["beta"], p["label_smoothing"])
    else:
        loss, chosen_r, rejected_r = dpo_loss(chosen, rejected, ref[0], ref[1], p["beta"])
    chosen_r, rejected_r = chosen_r.detach(), rejected_r.detach()
    return loss, {"reward_chosen": chosen_r, "reward_rejected": rejected_r,
                  "reward_accuracy": (chosen_r > rejected_r).float(),
                  "reward_margin": chosen_r - rejected_r}


def plackett_luce_step(model, batch, index, ref, p, generator):
    """The listwise DPO loss on each prompt's K responses, ranked best first (ref: K x B)."""
    logps = sequence_logps(model, batch, index).T
    loss = plackett_luce_loss(logps, ref.T, p["beta"])
    margin = (logps - ref.T)[:, :-1] - (logps - ref.T)[:, 1:]  # adjacent ranks' log-ratio margins
    return loss, {"reward_accuracy": (margin > 0).float().mean(-1).detach(),
                  "reward_margin": margin.mean(-1).detach()}


def ipo_step(model, batch, index, ref, p, generator):
    chosen, rejected = sequence_logps(model, batch, index)
    loss, h = ipo_loss(chosen, rejected, ref[0], ref[1], p["tau"])
    return loss, {"reward_accuracy": (h > 0).float(), "reward_margin": h}


def cringe_step(model, batch, index, ref, p, generator):
    chosen, rejected = index
    logits = forward_logits(model, batch)
    token_logps = token_logprobs(next_token_logprobs(logits), batch)
    logps = token_logps.sum(-1)
    gate = cringe_gate(logps[chosen], logps[rejected], p["b"], p["tau"])
    ce = ce_loss(token_logps[chosen])
    # each pair draws its own positive tokens, also where pairs share their rejected response
    cr = cringe_token_loss(logits[rejected, :-1], batch.input_ids[rejected, 1:],
                           batch.response_mask[rejected], p["k"], generator)
    loss = pairwise_cringe_loss(gate, ce, cr, p["gate_ce"])
    margin = (logps[chosen] - logps[rejected]).detach()
    return loss, {"gate": gate.detach(), "ce": ce.detach(), "cringe": cr.detach(),
                  "reward_accuracy": (margin > 0).float(), "reward_margin": margin}


def unlikelihood_step(model, batch, index, ref, p, generator):
    chosen, rejected = index
    token_logps = token_logprobs(forward_logprobs(model, batch), batch)
    loss = unlikelihood_loss(token_logps[chosen], token_logps[rejected],
                             batch.response_mask[rejected], p["alpha"])
    margin = (token_logps[chosen].sum(-1) - token_logps[rejected].sum(-1)).detach()
    return loss, {"reward_accuracy": (margin > 0).float(), "reward_margin": margin}


def preferred_ft_step(model, batch, index, ref, p, generator):
    """SFT on the chosen responses: the trainer batches only those (CHOSEN_ONLY)."""
    [chosen] = index
    ce = ce_loss(token_logprobs(forward_logprobs(model, batch), batch)[chosen])
    return ce, {"ce": ce.detach()}


# Preferred-FT learns from the chosen responses alone: the rejected ones are not even run.
CHOSEN_ONLY = {"preferred_ft"}
STEPS = {"dpo": dpo_step, "dpo_noisy": dpo_step, "cdpo_noisy": dpo_step, "ipo": ipo_step,
         "cringe": cringe_step, "unlikelihood": unlikelihood_step, "preferred_ft": preferred_ft_step,
         "plackett_luce": plackett_luce_step, "dpo_ranked": dpo_step}


def train(model, tok, pairs: pd.DataFrame, ref: pd.DataFrame | None, p: dict, scorer,
          ckpt: Checkpoint | None = None, world: World = SINGLE) -> pd.DataFrame:
    """Train in place; `ref` holds pi_ref's log-probs (DPO) or is None (Cringe needs none).
    With `ckpt`, resume from its last checkpoint and write one every `ckpt.every` steps.
    Under torchrun, data-parallel; the main process alone monitors the reward and checkpoints."""
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(p["seed"])  # the data order: the same in every process
    sample_gen = torch.Generator(device=dev).manual_seed(p["seed"])
    # Cringe's positive-token draws, on the logits' device; one stream per process
    token_gen = torch.Generator(device=dev).manual_seed(p["seed"] + 1 + world.rank)
    monitor = [list(x) for x in pairs.drop_duplicates("prompt_id")["prompt_ids"]][: p["reward_prompts"]]
    bs = p["batch_size"]
    steps_per_epoch = max(1, len(pairs) // bs)
    total = steps_per_epoch * p["epochs"]
    opt = make_optimizer(model.parameters(), p["optimizer"], p["lr"])
    columns = response_columns(pairs)[:1] if p["method"] in CHOSEN_ONLY else response_columns(pairs)
    if ref is not None:
        ref_logps = torch.tensor(ref[[reference_column(c) for c in columns]].to_numpy().T,
                                 dtype=torch.float32)
    train_mode(model, p["gradient_checkpointing"], dropout=False)

    def reward_now():
        if not monitor or not world.main:
            return float("nan")
        _, scores = rollout(model, tok, monitor, scorer, p["max_new_tokens"], sample_gen)
        return float(scores.mean())

    state = ckpt.restore(model, opt) if ckpt else None
    if state is None:
        metrics = [{"step": 0, "sample_reward": reward_now(), "seconds": 0.0}]
        step, order, order_epoch = 0, None, -1
    else:
        metrics, step = state["metrics"], state["step"]
        order, order_epoch = state["order"], state["order_epoch"]
        gen.set_state(state["gen"])
        sample_gen.set_state(state["sample_gen"])
        token_gen.set_state(state["token_gen"][world.rank])
        log.info("resuming from the checkpoint at step %d", step)
    ddp = wrap(model, world, p["compile"])

    def pair_losses(rows):
        batch, index = response_batch(pairs.iloc[rows.numpy()], columns, tok.pad_token_id)
        with autocast(dev):
            batch_ref = None if ref is None else ref_logps[:, rows].to(dev)
            loss, stats = STEPS[p["method"]](ddp, batch.to(dev), index.to(dev), batch_ref, p,
                                             token_gen)
        stats = {k: v.sum() for k, v in stats.items()}
        # averaged per row like the statistics: 2 where a batch's pairs share no response
        stats["sequences_per_row"] = torch.tensor(float(len(batch.input_ids)), device=dev)
        return loss.sum(), stats

    t0 = time.perf_counter() - metrics[-1]["seconds"]
    bar = progress(total=total, initial=step, desc=p["method"], unit="step", disable=not world.main)
    while step < total:
        epoch, pos = divmod(step, steps_per_epoch)
        if order_epoch != epoch:
            order, order_epoch = epoch_order(pairs["prompt_id"], p["batch_order"], gen), epoch
        idx = order[pos * bs:(pos + 1) * bs]
        lr = warmup_constant(step, p["warmup_steps"], p["lr"])
        set_lr(opt, lr)
        opt.zero_grad(set_to_none=True)
        parts = world.micro_batches(idx, p["micro_batch_size"], f"{p['method']}.batch_size")
        row = {k: v / len(idx) for k, v in accumulate(ddp, parts, pair_losses, len(idx), world).items()}
        check_finite(torch.tensor(row["loss"]), p["method"], step,
                     f"pairs {idx[:4].tolist()}... of epoch {epoch}")
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), p["max_grad_norm"])
        opt.step()
        step += 1
        row.update(step=step, epoch=epoch, lr=lr, grad_norm=grad_norm.item(),
                   seconds=time.perf_counter() - t0)
        if step % p["reward_every"] == 0 or step == total:
            row["sample_reward"] = reward_now()
        metrics.append(row)
        bar.update()
        bar.set_postfix(loss=f"{row['loss']:.3f}", refresh=False)
        if ckpt is not None and ckpt.due(step) and step < total:
            token_states = world.gather(token_gen.get_state())  # each process draws its own
            if world.main:
                ckpt.save(model, opt, {"step": step, "metrics": metrics, "order": order,
                                       "order_epoch": order_epoch, "gen": gen.get_state(),
                                       "sample_gen": sample_gen.get_state(),
                                       "token_gen": token_states})
    bar.close()
    return pd.DataFrame(metrics)


def main(argv=None):
    args = cli.parse(__doc__, ["pairs", "reference", "policy", "checkpoint"], ["model", "metrics"],
                     argv, optional=("reference", "checkpoint"))
    p = args.params
    if p["method"] not in STEPS:
        raise ValueError(f"unknown pairwise method '{p['method']}' ({sorted(STEPS)})")
    torch.manual_seed(p["seed"])
    ranked = p["method"] in RANKED  # these read the rankings, not the pairs
    pairs = io.read_parquet(args.pairs, ["prompt_id", "prompt_ids"] + ([] if ranked else PAIR_COLUMNS))
    if pairs.empty:
        raise ValueError(f"{args.pairs}: the file holds no {'rankings' if ranked else 'pairs'}")
    if p["method"] in NEEDS_REFERENCE:
        if not args.reference:
            raise ValueError(f"{p['method']} needs --reference (pi_ref's log-probs of the pairs)")
        ref = io.read_parquet(args.reference, [reference_column(c) for c in response_columns(pairs)])
        if len(ref) != len(pairs):
            raise ValueError(f"{args.reference} has {len(ref)} rows for {len(pairs)} pairs")
    else:  # Cringe, Unlikelihood and Preferred-FT have no reference model
        ref = None
    if p["method"] == "dpo_ranked":
        pairs, ref = ranking_pairs(pairs, ref)
    if "rate" in p:  # the noisy-label study: flip labels, pi_ref's log-probs moving with them
        both = apply_noise(pd.concat([pairs, ref], axis=1), p["rate"], p["mode"], p["seed"])
        pairs, ref = both[pairs.columns], both[ref.columns]
        log.info("%s labels: %d of %d pairs flipped (rate %g)", p["mode"], both["flipped"].sum(),
                 len(both), p["rate"])
    world = setup()
    tok = load_tokenizer(args.policy, "policy")
    model = load_causal_lm(args.policy, "policy").to(device())
    if p["method"] == "cringe" and p["k"] > model.config.vocab_size - 1:
        raise ValueError(f"cringe.k = {p['k']} exceeds the vocabulary size minus one"
                         f" ({model.config.vocab_size - 1})")
    # per-process generator states: a checkpoint of another number of processes is stale
    ckpt = Checkpoint(args.checkpoint, p["checkpoint_every"],
                      fingerprint(p | {"processes": world.size}, args.pairs, args.reference,
                                  args.policy))
    metrics = train(model, tok, pairs, ref, p, make_scorer(p["reward"]), ckpt, world)
    teardown(world)
    if not world.main:
        return
    with io.atomic_output(args.model) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    io.write_csv(metrics, args.metrics)
    ckpt.clear()
    first, last = metrics["sample_reward"].dropna().iloc[[0, -1]]
    log.info("%s: sample reward %.3f -> %.3f over %d steps in %.1f s", p["method"], first, last,
             int(metrics["step"].max()), metrics["seconds"].iloc[-1])


if __name__ == "__main__":
    cli.run(main)
