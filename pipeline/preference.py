"""Stage `train_pairwise`: a policy trained on the preference pairs with DPO or Pairwise Cringe.

Starts from pi_ref. Each step takes a batch of (prompt, chosen, rejected) token ids and runs chosen
and rejected through the policy in one forward pass; DPO reads pi_ref's log-probs from the cached
`reference` table. Dropout is off (eval mode) so that log-probs are those of the policy itself.
Every `reward_every` steps and at the end, the policy samples one completion for `reward_prompts`
training prompts and the ground-truth reward scores them (`sample_reward` in the metrics).
"""

import time

import pandas as pd
import torch

from pipeline import cli, io
from pipeline.checkpoint import Checkpoint, fingerprint
from pipeline.logprobs import forward_logits, left_pad, token_logprobs
from pipeline.logs import get_logger, progress
from pipeline.losses import (ce_loss, cringe_gate, cringe_token_loss, dpo_loss,
                             pairwise_cringe_loss)
from pipeline.models import autocast, device, load_causal_lm, load_tokenizer
from pipeline.optim import check_finite, make_optimizer, set_lr, warmup_constant
from pipeline.reference import PAIR_COLUMNS
from pipeline.rollout import rollout
from pipeline.score import make_scorer

log = get_logger("train_pairwise")


def pair_batch(chunk: pd.DataFrame, pad_id: int):
    """Chosen rows first, rejected rows second, in one left-padded batch."""
    prompts = [list(p) for p in chunk["prompt_ids"]] * 2
    responses = [list(r) for r in chunk["chosen_ids"]] + [list(r) for r in chunk["rejected_ids"]]
    return left_pad(prompts, responses, pad_id)


def dpo_step(model, batch, ref, p, generator):
    n = len(batch.input_ids) // 2
    logps = token_logprobs(forward_logits(model, batch), batch).sum(-1)
    loss, chosen_r, rejected_r = dpo_loss(logps[:n], logps[n:], ref[0], ref[1], p["beta"])
    return loss.mean(), {
        "reward_chosen": chosen_r.mean().item(), "reward_rejected": rejected_r.mean().item(),
        "reward_accuracy": (chosen_r > rejected_r).float().mean().item(),
        "reward_margin": (chosen_r - rejected_r).mean().item(),
    }


def cringe_step(model, batch, ref, p, generator):
    n = len(batch.input_ids) // 2
    logits = forward_logits(model, batch)
    token_logps = token_logprobs(logits, batch)
    logps = token_logps.sum(-1)
    gate = cringe_gate(logps[:n], logps[n:], p["b"], p["tau"])
    ce = ce_loss(token_logps[:n])
    cr = cringe_token_loss(logits[n:], batch.input_ids[n:, 1:], batch.response_mask[n:], p["k"],
                           generator)
    loss = pairwise_cringe_loss(gate, ce, cr, p["gate_ce"])
    margin = (logps[:n] - logps[n:]).detach()
    return loss.mean(), {
        "gate": gate.mean().item(), "ce": ce.mean().item(), "cringe": cr.mean().item(),
        "reward_accuracy": (margin > 0).float().mean().item(), "reward_margin": margin.mean().item(),
    }


STEPS = {"dpo": dpo_step, "cringe": cringe_step}


def train(model, tok, pairs: pd.DataFrame, ref: pd.DataFrame | None, p: dict, scorer,
          ckpt: Checkpoint | None = None) -> pd.DataFrame:
    """Train in place; `ref` holds pi_ref's log-probs (DPO) or is None (Cringe needs none).
    With `ckpt`, resume from its last checkpoint and write one every `ckpt.every` steps."""
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(p["seed"])
    sample_gen = torch.Generator(device=dev).manual_seed(p["seed"])
    monitor = [list(x) for x in pairs.drop_duplicates("prompt_id")["prompt_ids"]][: p["reward_prompts"]]
    bs = p["batch_size"]
    steps_per_epoch = max(1, len(pairs) // bs)
    total = steps_per_epoch * p["epochs"]
    opt = make_optimizer(model.parameters(), p["optimizer"], p["lr"])
    if ref is not None:
        ref_logps = torch.tensor(ref[["ref_chosen", "ref_rejected"]].to_numpy().T, dtype=torch.float32)
    model.eval()

    def reward_now():
        if not monitor:
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
        log.info("resuming from the checkpoint at step %d", step)
    t0 = time.perf_counter() - metrics[-1]["seconds"]
    bar = progress(total=total, initial=step, desc=p["method"], unit="step")
    while step < total:
        epoch, pos = divmod(step, steps_per_epoch)
        if order_epoch != epoch:
            order, order_epoch = torch.randperm(len(pairs), generator=gen), epoch
        idx = order[pos * bs:(pos + 1) * bs]
        batch = pair_batch(pairs.iloc[idx.numpy()], tok.pad_token_id).to(dev)
        lr = warmup_constant(step, p["warmup_steps"], p["lr"])
        set_lr(opt, lr)
        with autocast(dev):
            batch_ref = None if ref is None else ref_logps[:, idx].to(dev)
            loss, row = STEPS[p["method"]](model, batch, batch_ref, p, gen)
        check_finite(loss, p["method"], step, f"pairs {idx[:4].tolist()}... of epoch {epoch}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), p["max_grad_norm"])
        opt.step()
        step += 1
        row.update(step=step, epoch=epoch, loss=loss.item(), lr=lr, grad_norm=grad_norm.item(),
                   seconds=time.perf_counter() - t0)
        if step % p["reward_every"] == 0 or step == total:
            row["sample_reward"] = reward_now()
        metrics.append(row)
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if ckpt is not None and ckpt.due(step) and step < total:
            ckpt.save(model, opt, {"step": step, "metrics": metrics, "order": order,
                                   "order_epoch": order_epoch, "gen": gen.get_state(),
                                   "sample_gen": sample_gen.get_state()})
    bar.close()
    return pd.DataFrame(metrics)


def main(argv=None):
    args = cli.parse(__doc__, ["pairs", "reference", "policy", "checkpoint"], ["model", "metrics"],
                     argv, optional=("reference", "checkpoint"))
    p = args.params
    if p["method"] not in STEPS:
        raise ValueError(f"unknown pairwise method '{p['method']}' ({sorted(STEPS)})")
    torch.manual_seed(p["seed"])
    pairs = io.read_parquet(args.pairs, PAIR_COLUMNS + ["prompt_id"])
    if pairs.empty:
        raise ValueError(f"{args.pairs}: the pairs file holds no pairs")
    if p["method"] == "dpo":
        if not args.reference:
            raise ValueError("dpo needs --reference (pi_ref's log-probs of the pairs)")
        ref = io.read_parquet(args.reference, ["ref_chosen", "ref_rejected"])
        if len(ref) != len(pairs):
            raise ValueError(f"{args.reference} has {len(ref)} rows for {len(pairs)} pairs")
    else:  # Pairwise Cringe has no reference model
        ref = None
    tok = load_tokenizer(args.policy, "policy")
    model = load_causal_lm(args.policy, "policy").to(device())
    if p["method"] == "cringe" and p["k"] > model.config.vocab_size - 1:
        raise ValueError(f"cringe.k = {p['k']} exceeds the vocabulary size minus one"
                         f" ({model.config.vocab_size - 1})")
    ckpt = Checkpoint(args.checkpoint, p["checkpoint_every"],
                      fingerprint(p, args.pairs, args.reference, args.policy))
    metrics = train(model, tok, pairs, ref, p, make_scorer(p["reward"]), ckpt)
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
