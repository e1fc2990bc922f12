"""Stage `sft`: train the reference policy pi_ref on IMDb review text (labels unused).

From scratch (policy.init = "scratch", the embedded default) a GPT-2 sized by the config, or
`from_pretrained` of a hub id or local folder. Reviews are truncated to `sft.max_length` tokens
(only the first ~64 matter: prompt <= 8 tokens plus the completion); a review that fits ends
with EOS, so the policy learns to stop. Loss: mean next-token cross-entropy, computed with the
shared response log-prob helper (the whole review is the "response", with no prompt).
AdamW, linear warmup then cosine decay, gradient clipping at `sft.max_grad_norm`; bf16 autocast on
CUDA, and on a CPU where `resources.cpu_precision` says so.
The held-out loss is measured before and after training; if SFT made it worse (a learning rate
made for training from scratch does that to a pretrained model), the stage stops and says which
key to change, unless `sft.allow_worse` is set.
"""

import math
import re

import numpy as np
import pandas as pd
import torch

from pipeline import cli, io
from pipeline.checkpoint import Checkpoint, fingerprint
from pipeline.config import Policy, Sft, borrow, record
from pipeline.distributed import SINGLE, World, accumulate, setup, teardown, wrap
from pipeline.logprobs import forward_logprobs, left_pad, token_logprobs
from pipeline.logs import get_logger
from pipeline.loop import (
    Run,
    Tracker,
    generators,
    make_optimizer,
    save_policy,
    set_lr,
    tracker_for,
    warmup_cosine,
)
from pipeline.lora import adapt, trainable
from pipeline.models import autocast, build_gpt2, device, load_causal_lm, train_mode
from pipeline.safe_loading import bos_ids, load_tokenizer
from pipeline.settings import read
from pipeline.sources import check_context, context_length

log = get_logger("sft")


@record
class Settings(Policy, Sft):
    """The `sft` rule's settings: config sections `policy` (a GGUF init replaced by the folder rule
    pretrained made of it; a pretrained model takes its vocabulary from the tokenizer) and `sft`."""

    tracking: borrow("train.tracking")
    tracking_dir: borrow("train.tracking_dir")


# Characters of a review encoded per token kept: well above what IMDb text takes per token with
# GPT-2's tokenizer or the embedded default's (docs/performance.md), so a start is rarely short.
CHARS_PER_TOKEN = 8
SPACE = re.compile(r"\s")


def head(text: str, n_chars: int) -> str:
    """`text` up to its first whitespace at or after `n_chars`; all of it when there is none."""
    cut = SPACE.search(text, n_chars)
    return text[: cut.start()] if cut else text


def encode(tok, texts: list[str], max_length: int) -> list[list[int]]:
    """Each review's first `max_length` tokens, with EOS where the review ends before them; a
    tokenizer that adds a BOS (Llama 3's) has it first, as the prompts do.

    A review's start is all that is kept, so only its start is encoded: the text up to the first
    whitespace after CHARS_PER_TOKEN characters per token (encoding whole reviews to cut them was
    most of the stage's set-up). Cut at whitespace, where the pre-tokenizer splits, the start's
    tokens are the whole text's; a start that comes out shorter than its tokens' share is
    encoded whole, and so is every review if the first ones differ from their whole text's."""
    bos = bos_ids(tok)
    n_text = max_length - len(bos)

    def encode_all(batch):
        return tok(batch, add_special_tokens=False, truncation=True, max_length=n_text)["input_ids"]

    starts = [head(t, CHARS_PER_TOKEN * n_text) for t in texts]
    ids = encode_all(starts)
    short = [
        i
        for i, (s, t, x) in enumerate(zip(starts, texts, ids))
        if len(s) < len(t) and len(x) < n_text
    ]
    if short:
        for i, x in zip(short, encode_all([texts[i] for i in short])):
            ids[i] = x
    checked = texts[:64]
    if ids[: len(checked)] != encode_all(checked):
        log.info("the tokenizer does not split at whitespace: encoding every review whole")
        ids = encode_all(texts)
    return [bos + t + ([tok.eos_token_id] if len(t) < n_text else []) for t in ids if len(t) > 1]


def nll(model, seqs: list[list[int]], pad_id: int, dev) -> tuple[torch.Tensor, int]:
    """Summed next-token negative log-likelihood of a batch and its token count."""
    batch = left_pad([[]] * len(seqs), seqs, pad_id).to(dev)
    with autocast(dev):
        logprobs = forward_logprobs(model, batch)
    return -token_logprobs(logprobs, batch).sum(), int(batch.response_mask.sum())


def train(
    model,
    train_ids,
    pad_id,
    p,
    dev,
    ckpt: Checkpoint | None = None,
    world: World = SINGLE,
    tracker: Tracker | None = None,
):
    """Train in place; return the per-step metrics. With `ckpt`, resume from
    its last checkpoint and write one every `ckpt.every` steps. Under torchrun, data-parallel."""
    gen = generators(p.seed).order
    bs = p.batch_size
    steps_per_epoch = len(train_ids) // bs
    if steps_per_epoch == 0:
        raise ValueError(f"sft.batch_size = {bs} but only {len(train_ids)} SFT reviews")
    total = steps_per_epoch * p.epochs
    opt = make_optimizer(trainable(model), "adamw", p.lr, p.weight_decay)
    train_mode(model, p.gradient_checkpointing, dropout=True)
    run = Run("sft", total, model, opt, ckpt, world, tracker)
    order, order_epoch = None, -1
    if run.restored:
        order, order_epoch = run.restored["order"], run.restored["order_epoch"]
        gen.set_state(run.restored["gen"])
    ddp = wrap(model, world, p.compile)

    def step_nll(rows):
        return nll(ddp, [train_ids[i] for i in rows.tolist()], pad_id, dev)[0], {}

    while run.done < total:
        epoch, pos = divmod(run.done, steps_per_epoch)
        if order_epoch != epoch:
            order, order_epoch = torch.randperm(len(train_ids), generator=gen), epoch
        idx = order[pos * bs : (pos + 1) * bs]
        lr = warmup_cosine(run.done, total, p.warmup_steps, p.lr)
        set_lr(opt, lr)
        # the mean is over the global batch's tokens, known before any forward pass
        n_tokens = sum(len(train_ids[i]) - 1 for i in idx.tolist())
        opt.zero_grad(set_to_none=True)
        parts = world.micro_batches(idx, p.micro_batch_size, "sft.batch_size")
        loss = accumulate(ddp, parts, step_nll, n_tokens, world)["loss"] / n_tokens
        grad_norm = run.update(
            loss, p.max_grad_norm, f"reviews {idx[:4].tolist()}... of epoch {epoch}"
        )
        run.done += 1
        run.log(
            {
                "step": run.done,
                "epoch": epoch,
                "loss": loss,
                "lr": lr,
                "grad_norm": grad_norm,
                "tokens": n_tokens,
            }
        )
        run.end_step(lambda: {"order": order, "order_epoch": order_epoch, "gen": gen.get_state()})
    run.close()
    return pd.DataFrame(run.metrics)


@torch.no_grad()
def evaluate(model, seqs, pad_id, bs, dev) -> dict:
    model.eval()
    total, n = 0.0, 0
    for start in range(0, len(seqs), bs):
        s, k = nll(model, seqs[start : start + bs], pad_id, dev)
        total, n = total + s.item(), n + k
    loss = total / max(n, 1)
    return {
        "heldout_loss": loss,
        "heldout_perplexity": math.exp(loss),
        "heldout_tokens": n,
        "heldout_reviews": len(seqs),
    }


def check_improved(before: dict, after: dict, p: Settings) -> None:
    """Stop when SFT made the policy worse at its own task: a learning rate made for training
    from scratch wrecks a pretrained model, and every later stage would inherit it silently."""
    if after["heldout_loss"] <= before["heldout_loss"] or p.allow_worse:
        return
    raise ValueError(
        f"sft: the held-out loss rose from {before['heldout_loss']:.3f} to "
        f"{after['heldout_loss']:.3f} (perplexity {before['heldout_perplexity']:.1f} -> "
        f"{after['heldout_perplexity']:.1f}): SFT harmed the policy. Lower sft.lr (now "
        f"{p.lr:g}; a pretrained model wants about 1e-5 to 5e-5, see "
        "workflow/presets/smollm2.yaml), or set sft.allow_worse: true to keep it anyway"
    )


def main(argv=None):
    args = cli.parse(
        __doc__,
        ["sft", "tokenizer", "checkpoint"],
        ["model", "metrics", "eval"],
        argv,
        optional=("checkpoint",),
    )
    p = read(Settings, args.params, "sft")
    world = setup()
    dev = device()
    torch.manual_seed(p.seed)
    tok = load_tokenizer(args.tokenizer, "tokenizer")
    if p.init == "scratch":
        if p.lora is not None:
            raise ValueError("policy.lora adapts a pretrained policy; policy.init is scratch")
        model = build_gpt2(tok, p.n_layer, p.n_embd, p.n_head, p.n_positions)
    else:
        model = load_causal_lm(p.init, "policy.init")
        check_context(
            context_length(model.config.to_dict()),
            f"the n_positions of policy.init '{p.init}'",
            [("sft.max_length", p.max_length)],
        )
    model = adapt(model, p.lora).to(dev)
    log.info(
        "policy: %s, %.2fM parameters (%.2fM trained), device %s",
        p.init,
        sum(t.numel() for t in model.parameters()) / 1e6,
        sum(t.numel() for t in trainable(model)) / 1e6,
        dev,
    )

    texts = io.read_parquet(args.sft, ["text"])["text"].tolist()
    ids = encode(tok, texts, p.max_length)
    order = np.random.default_rng(p.seed).permutation(len(ids))
    holdout = min(p.holdout, len(ids) // 10)
    valid_ids = [ids[i] for i in order[:holdout]]
    train_ids = [ids[i] for i in order[holdout:]]
    log.info(
        "%d training and %d held-out reviews, <= %d tokens each",
        len(train_ids),
        len(valid_ids),
        p.max_length,
    )

    before = evaluate(model, valid_ids, tok.pad_token_id, p.batch_size, dev)
    log.info(
        "held-out loss before SFT %.3f (perplexity %.1f)",
        before["heldout_loss"],
        before["heldout_perplexity"],
    )
    ckpt = Checkpoint(
        args.checkpoint, p.checkpoint_every, fingerprint(args.params, args.sft, args.tokenizer)
    )
    tracker = tracker_for(p, "sft") if world.main else None
    metrics = train(model, train_ids, tok.pad_token_id, p, dev, ckpt, world, tracker)
    teardown(world)
    if not world.main:
        return
    heldout = evaluate(model, valid_ids, tok.pad_token_id, p.batch_size, dev)
    heldout["heldout_loss_before"] = before["heldout_loss"]
    heldout["train_tokens_per_second"] = metrics["tokens"].sum() / metrics["seconds"].iloc[-1]
    log.info(
        "held-out loss %.3f -> %.3f, perplexity %.1f -> %.1f; %.0f training tokens/s",
        before["heldout_loss"],
        heldout["heldout_loss"],
        before["heldout_perplexity"],
        heldout["heldout_perplexity"],
        heldout["train_tokens_per_second"],
    )
    check_improved(before, heldout, p)
    io.write_json(heldout, args.eval)
    save_policy(model, tok, metrics, args.model, args.metrics, ckpt)


if __name__ == "__main__":
    cli.run(main)
