"""Target `preflight`: what the study will cost on this machine, before it runs.

With the configured policy, reward and batch sizes, a few steps of each kind of torch job run
through the stages' own code on synthetic token ids of the configured lengths: an SFT step, a
batch of samples, the scoring of a batch of texts, a batch of pi_ref's log-probs, a step of each
trainer in `train.methods` (PPO and the online methods: an iteration), and an evaluation batch
(samples and the exact KL both ways). Each kind runs in a process of its own, which gives its
start-up and model-loading time and its peak memory: CUDA's peak allocation on a GPU, the
process's peak RSS on the CPU.
A batch that does not fit in memory is reported with the config key that sets it, not a
traceback (`preflight.memory_mb` asks whether a smaller GPU would do: on a GPU it caps CUDA's
allocator, on the CPU it is compared with the peak RSS).

Each kind runs with the threads its rule's jobs get (`resources.threads` for the trainers and the
evaluations, every core for the others), and with `policy.lora` as the jobs do. Each rule's wall
time is then projected from the study's own counts (reviews, prompts, pairs, steps, policies):
jobs x (start-up + loading + units x seconds per unit), written to `results/preflight.csv` and
printed. The study's total counts each rule's time once per core its jobs use, out of the cores
given: jobs on every core run one after another, jobs of one thread share the cores. Two things
make it an upper bound: sampling always runs to `sample.max_new_tokens` (a real completion may stop
at EOS first), and every prompt has C(n, 2) pairs (ties are dropped).
"""

import importlib
import math
import multiprocessing
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np
import pandas as pd
import torch

from pipeline import cli, io
from pipeline.batching import reference_column, response_columns
from pipeline.config import Preflight, Sample, borrow, given, record
from pipeline.logprobs import left_pad, response_logprobs
from pipeline.logs import get_logger
from pipeline.lora import adapt, reference
from pipeline.measures import final_states, kl_measures
from pipeline.methods import METHODS, RANKINGS, UNPAIRED, load_extensions
from pipeline.models import (
    autocast,
    build_gpt2,
    device,
    load_causal_lm,
    precision,
)
from pipeline.rewards import make_scorer
from pipeline.safe_loading import bos_ids, load_tokenizer
from pipeline.sampling import sample
from pipeline.settings import read
from pipeline.stages import online, ppo, preference, sft
from pipeline.stages.best_of_n import Settings as BestOfN
from pipeline.stages.evaluate import Settings as Evaluate
from pipeline.stages.prompts import Settings as Prompts
from pipeline.stages.reference import Settings as Reference

log = get_logger("preflight")


@record
class Monitor:
    """The trainers' watch on the true reward."""

    reward_prompts: borrow("train.reward_prompts")
    reward_every: borrow("train.reward_every")


@record
class Threads:
    """The threads each kind of job runs with, as the rules give them (resources.threads)."""

    cores: int = given("given to Snakemake (--cores), at most this machine's")
    train: int = given("a trainer job's")
    evaluate: int = given("an evaluation job's")


@record
class Counts:
    """What the study repeats the measured jobs over (from its config, not measured)."""

    train_prompts: int = given("data.n_train_prompts")
    samples: int = given("training prompts x sample.n_per_prompt")
    eval_prompts: int = given("evaluate.n_prompts")
    eval_samples: int = given("evaluation prompts x evaluate.samples_per_prompt")
    jobs: dict[str, int] = given("per trained method: swept values x seeds")
    policies: int = given("evaluated: pi_ref and every trained policy")
    best_of_n_jobs: int = given("seeds, if best_of_n is a method of the table; else 1 (pi*'s pool)")
    cpu_jobs: dict[str, int] = given("per rule without torch, in the order they run")


@record
class Settings:
    """The `preflight` rule's settings: every stage's that the measured jobs run with, the true
    reward (also for ppo_rm: its reward model is not trained yet), and the modules registering
    methods of one's own."""

    sft: sft.Settings  # the policy as SFT builds or loads it, and SFT's steps
    prompts: Prompts
    sample: Sample
    reward: borrow("reward")
    reference: Reference
    evaluate: Evaluate
    best_of_n: BestOfN
    monitor: Monitor
    preflight: Preflight
    threads: Threads
    extensions: borrow("train.extensions")
    trainers: dict = given(
        "per method of train.methods: its trainer's settings (`trainer_settings`)"
    )
    counts: Counts


def trainer_settings(method: str, params: dict):
    """A trainer's settings, as its own rule's job would read them: the Settings of the module
    its record names."""
    module = importlib.import_module(f"pipeline.stages.{METHODS[method].trainer}")
    return read(module.Settings, params, f"preflight.trainers.{method}")


@dataclass
class Inputs:
    params: Settings
    sft: str  # the SFT reviews: their number, and real text to score
    tokenizer: str


def load_policy(inputs: Inputs, tok):
    p = inputs.params.sft
    if p.init == "scratch":
        return build_gpt2(tok, p.n_layer, p.n_embd, p.n_head, p.n_positions)
    return load_causal_lm(p.init, "policy.init")


def policy(inputs: Inputs, trained: bool = False):
    """The tokenizer, the policy as the SFT stage starts it (with its adapters, for a job that
    `trained` it), and the policy's loading time."""
    tok = load_tokenizer(inputs.tokenizer, "tokenizer")
    t0 = time.perf_counter()
    model = load_policy(inputs, tok)
    model = (adapt(model, inputs.params.sft.lora) if trained else model).to(device())
    return tok, model, time.perf_counter() - t0


def random_ids(tok, n: int, length: int, generator: torch.Generator) -> list[list[int]]:
    """Token ids of ordinary text: no special token, so nothing stops a sequence early."""
    special = set(tok.all_special_ids)
    pool = torch.tensor([i for i in range(min(len(tok), 50_000)) if i not in special])
    rows = pool[torch.randint(len(pool), (n, length), generator=generator)]
    return rows.tolist()


def prompts_of(inputs: Inputs, tok, n: int, generator) -> list[list[int]]:
    """`n` prompts of the longest configured length, after the tokenizer's BOS."""
    return [
        bos_ids(tok) + ids
        for ids in random_ids(tok, n, inputs.params.prompts.max_tokens, generator)
    ]


def timed(fn, repeats: int) -> float:
    """Seconds per call of `fn`, after one call that warms up (allocations, kernels)."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def per_step(seconds: pd.Series) -> float:
    """Seconds per step from a trainer's running time after each step, from its second step on
    (the first warms up)."""
    return float((seconds.iloc[-1] - seconds.iloc[0]) / (len(seconds) - 1))


# --- the kinds of job: each returns {unit: seconds per unit, "load": seconds} -----------------


def measure_sft(inputs: Inputs) -> dict:
    p, steps = inputs.params.sft, inputs.params.preflight.steps
    tok, model, load = policy(inputs, trained=True)
    gen = torch.Generator().manual_seed(0)
    ids = random_ids(tok, (steps + 1) * p.batch_size, p.max_length, gen)
    metrics = sft.train(model, ids, tok.pad_token_id, replace(p, epochs=1, seed=0), device())
    heldout = ids[: min(p.batch_size, len(ids))]
    per_review = timed(
        lambda: sft.evaluate(model, heldout, tok.pad_token_id, p.batch_size, device()), 1
    ) / len(heldout)
    return {"step": per_step(metrics["seconds"]), "heldout_review": per_review, "load": load}


def sampling(inputs: Inputs, model, tok, batch_size: int) -> float:
    """Seconds to sample one batch of `batch_size` completions of the longest configured length
    (0 for none)."""
    if batch_size == 0:
        return 0.0
    q = inputs.params
    gen = torch.Generator(device=device()).manual_seed(0)
    prompts = prompts_of(inputs, tok, batch_size, torch.Generator().manual_seed(0))
    # eos -1: every row runs to max_new_tokens, as in the longest batch
    return timed(
        lambda: sample(model, prompts, q.sample.max_new_tokens, -1, tok.pad_token_id, gen),
        max(1, q.preflight.steps // 2),
    )


def measure_sample(inputs: Inputs) -> dict:
    """A batch of the sample stage's, and one of Best-of-N's (the evaluation's batch size)."""
    q = inputs.params
    tok, model, load = policy(inputs)
    model.eval()
    return {
        "load": load,
        "sample_batch": sampling(inputs, model, tok, batch_sizes(q)["sample"]),
        "eval_batch": sampling(inputs, model, tok, batch_sizes(q)["evaluate"]),
    }


def measure_score(inputs: Inputs) -> dict:
    """The true reward of real review texts as long as a prompt and its completion."""
    q = inputs.params
    tok = load_tokenizer(inputs.tokenizer, "tokenizer")
    t0 = time.perf_counter()
    scorer = make_scorer(q.reward)
    load = time.perf_counter() - t0
    reviews = io.read_parquet(inputs.sft, ["text"])["text"].head(max(64, 2 * q.reward.batch_size))
    length = q.prompts.max_tokens + q.sample.max_new_tokens
    ids = tok(reviews.tolist(), add_special_tokens=False, truncation=True, max_length=length)
    texts = tok.batch_decode(ids["input_ids"], skip_special_tokens=True)
    return {"text": timed(lambda: scorer(texts), 1) / len(texts), "load": load}


def measure_reference(inputs: Inputs) -> dict:
    q, steps = inputs.params, inputs.params.preflight.steps
    tok, model, load = policy(inputs)
    model.eval()
    gen = torch.Generator().manual_seed(0)
    bs = min(q.reference.batch_size, q.counts.samples)
    batch = left_pad(
        prompts_of(inputs, tok, bs, gen),
        random_ids(tok, bs, q.sample.max_new_tokens, gen),
        tok.pad_token_id,
    )
    batch = batch.to(device())

    def forward():
        with torch.no_grad(), autocast(device()):
            response_logprobs(model, batch)

    return {"batch": timed(forward, steps), "load": load}


def synthetic_pairs(tok, n_prompts: int, p: Settings, data: str, gen) -> pd.DataFrame:
    """Each prompt's n samples, as pairs (every C(n, 2) of them), as one ranking, or unpaired."""
    n, length = p.sample.n_per_prompt, p.sample.max_new_tokens
    rows = []
    for i in range(n_prompts):
        prompt = bos_ids(tok) + random_ids(tok, 1, p.prompts.max_tokens, gen)[0]
        responses = random_ids(tok, n, length, gen)
        if data == RANKINGS:
            rows.append(
                {
                    "prompt_id": i,
                    "prompt_ids": prompt,
                    **{f"rank{k}_ids": r for k, r in enumerate(responses)},
                }
            )
        elif data == UNPAIRED:
            rows += [
                {
                    "prompt_id": i,
                    "prompt_ids": prompt,
                    "completion_ids": r,
                    "desirable": k % 2 == 0,
                    "kl_completion_ids": responses[k - 1],
                }
                for k, r in enumerate(responses)
            ]
        else:
            rows += [
                {
                    "prompt_id": i,
                    "prompt_ids": prompt,
                    "chosen_ids": responses[a],
                    "rejected_ids": responses[b],
                }
                for a, b in combinations(range(n), 2)
            ]
    return pd.DataFrame(rows)


def measure_pairwise(inputs: Inputs, method: str) -> dict:
    q, steps = inputs.params, inputs.params.preflight.steps
    p = replace(q.trainers[method], epochs=1, reward_prompts=0, trajectory=[])
    tok, model, load = policy(inputs, trained=True)
    gen = torch.Generator().manual_seed(0)
    data = METHODS[method].data
    per_prompt = rows_per_prompt(data, q.sample.n_per_prompt)
    pairs = synthetic_pairs(tok, math.ceil((steps + 1) * p.batch_size / per_prompt), q, data, gen)
    ref = None
    if METHODS[method].needs_reference:
        ref = pd.DataFrame(
            {reference_column(c): np.zeros(len(pairs)) for c in response_columns(pairs)}
        )
    metrics = preference.train(model, tok, pairs, ref, p, scorer=None)
    model.eval()  # the reward monitor samples as the trainer does, between steps
    return {
        "step": per_step(metrics["seconds"].iloc[1:]),  # row 0: before training
        "monitor_batch": sampling(inputs, model, tok, batch_sizes(q)["monitor"]),
        "load": load,
    }


def measure_online(inputs: Inputs, method: str) -> dict:
    """Two iterations of PPO or an online method: the second's time (the first warms up)."""
    q = inputs.params
    p = replace(q.trainers[method], iterations=2, reward=q.reward, trajectory=[])
    tok, model, load = policy(inputs, trained=True)
    t0 = time.perf_counter()
    ref = reference(model, lambda: load_policy(inputs, tok).to(device()))
    load += time.perf_counter() - t0
    prompts = prompts_of(inputs, tok, p.rollout_size, torch.Generator().manual_seed(0))
    if METHODS[method].trainer == "ppo":
        metrics = ppo.train(
            ppo.PolicyWithValue(model).to(device()), ref, tok, prompts, make_scorer(q.reward), p
        )
    else:
        metrics = online.train(model, ref, tok, prompts, make_scorer(q.reward), p)
    return {"iteration": float(metrics["seconds"].diff().iloc[-1]), "load": load}


def measure_kl(inputs: Inputs) -> dict:
    """An evaluation's batch: its samples, the exact KL on them (policy and pi_ref both run), and
    the reverse KL on pi_ref's samples (the policy runs, pi_ref's side from its final states)."""
    q, steps = inputs.params, inputs.params.preflight.steps
    tok, model, load = policy(inputs)
    t0 = time.perf_counter()
    ref = load_policy(inputs, tok).to(device())  # a model of its own, as pi_ref is
    load += time.perf_counter() - t0
    gen = torch.Generator().manual_seed(0)
    bs = batch_sizes(q)["evaluate"]
    prompts = prompts_of(inputs, tok, bs, gen)
    completions = random_ids(tok, bs, q.sample.max_new_tokens, gen)
    model.eval(), ref.eval()
    states = final_states(ref, prompts, completions, tok.pad_token_id, bs)
    return {
        "batch": timed(
            lambda: kl_measures(model, ref, prompts, completions, tok.pad_token_id, bs), steps
        ),
        "reverse_batch": timed(
            lambda: kl_measures(ref, model, prompts, completions, tok.pad_token_id, bs, states),
            steps,
        ),
        "sample_batch": sampling(inputs, model, tok, bs),
        "load": load,
    }


# --- one process per kind ------------------------------------------------------------------


def trainer_change(method: str) -> str:
    """The config keys that set a trainer's batch: what to change when it does not fit."""
    if METHODS[method].trainer == "preference":
        section = METHODS[method].settings
        return (
            f"{section}.micro_batch_size (accumulates up to {section}.batch_size) or "
            f"{section}.gradient_checkpointing"
        )
    return "ppo.minibatch_size (its updates) or sample.batch_size (its rollouts)"


def measure(kind: str, inputs: Inputs) -> dict:
    if kind.startswith("train:"):
        method = kind.split(":")[1]
        trainer = METHODS[method].trainer
        return (measure_pairwise if trainer == "preference" else measure_online)(inputs, method)
    return {
        "sft": measure_sft,
        "sample": measure_sample,
        "score": measure_score,
        "reference": measure_reference,
        "kl": measure_kl,
    }[kind](inputs)


def cap_memory(mb: int | None) -> None:
    """On a GPU, let CUDA's allocator hold at most `mb` MB, as a smaller GPU's would: a batch
    too large then fails as it would there. (On the CPU, the peak RSS is compared after.)"""
    if mb is not None and torch.cuda.is_available():
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, mb * 2**20 / total))


def out_of_memory(err: BaseException) -> bool:
    return isinstance(err, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(err, RuntimeError)
        and ("can't allocate memory" in str(err) or "out of memory" in str(err))
    )


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def threads(kind: str, q: Settings) -> int:
    """The threads the jobs of a kind run with: the trainers' and the evaluations' own, every
    core for the others."""
    if kind.startswith("train:"):
        return q.threads.train
    return q.threads.evaluate if kind == "kl" else q.threads.cores


def child(kind: str, inputs: Inputs, started: float, queue) -> None:
    """One kind's measurement, in a process of its own; puts its result on `queue`."""
    result = {"startup": time.time() - started}
    torch.set_num_threads(threads(kind, inputs.params))
    load_extensions(inputs.params.extensions)  # a new process: only the built-ins so far
    limit = inputs.params.preflight.memory_mb
    cap_memory(limit)
    try:
        result |= measure(kind, inputs) | {"fits": True, "error": ""}
    except Exception as err:  # noqa: BLE001 - reported in the table, by kind
        if not out_of_memory(err):
            raise
        result |= {"fits": False, "error": str(err).splitlines()[0][:200]}
    result["peak_mb"] = peak_memory_mb()
    if result["fits"] and limit is not None and result["peak_mb"] > limit:
        result |= {"fits": False, "error": f"peak {result['peak_mb']:.0f} MB > preflight.memory_mb"}
    queue.put(result)


def run_kind(kind: str, inputs: Inputs) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(kind, inputs, time.time(), queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        if proc.exitcode == -9:  # the kernel's out-of-memory killer
            return {
                "fits": False,
                "error": "killed by the system (out of memory)",
                "startup": 0.0,
                "peak_mb": float("nan"),
            }
        raise RuntimeError(
            f"preflight: measuring {kind} failed (exit code {proc.exitcode});"
            " its traceback is above"
        )
    return queue.get()


def cpu_stage_startup() -> float:
    """A stage without torch: the start of a Python process that reads and writes tables."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pandas, pyarrow.parquet"], check=True)
    return time.perf_counter() - t0


# --- the projection --------------------------------------------------------------------------

CHANGE_SFT = "sft.micro_batch_size (accumulates up to sft.batch_size) or sft.gradient_checkpointing"


def rows_per_prompt(data: str, n: int) -> int:
    """Training rows a prompt's n samples give: C(n, 2) pairs, one ranking, or n samples (at
    most: the unpaired view drops a sample at its prompt's median, the pairs drop ties)."""
    return {RANKINGS: 1, UNPAIRED: n}.get(data, math.comb(n, 2))


def batch_sizes(q: Settings) -> dict:
    c = q.counts
    return {
        "sample": min(q.sample.batch_size, c.samples),
        "evaluate": min(q.evaluate.batch_size, c.eval_samples),
        "monitor": min(q.monitor.reward_prompts, 256),
    }


def projection(q: Settings, measured: dict, cpu_start: float, sft_reviews: int) -> pd.DataFrame:
    """One row per rule: its jobs, each job's units and seconds, and the rule's total."""
    c, bs = q.counts, batch_sizes(q)
    sampled, scored = measured["sample"], measured["score"]
    rows = []

    def add(rule, jobs, kind, units, unit, per_unit, change, extra=0.0, method=""):
        m = measured[kind]
        start = m["startup"] + m["load"]
        per_job = start + units * per_unit + extra
        rows.append(
            {
                "rule": rule,
                "method": method,
                "jobs": jobs,
                "threads": threads(kind, q),
                "unit": unit,
                "units_per_job": units,
                "seconds_per_unit": per_unit,
                "seconds_start": start,
                "seconds_per_job": per_job,
                "seconds_total": jobs * per_job,
                "peak_memory_mb": m["peak_mb"],
                "fits": m["fits"],
                "change": "" if m["fits"] else change,
                "error": m["error"],
            }
        )

    s = q.sft
    holdout = min(s.holdout, sft_reviews // 10)
    add(
        "sft",
        1,
        "sft",
        (sft_reviews - holdout) // s.batch_size * s.epochs,
        "step",
        measured["sft"]["step"],
        CHANGE_SFT,
        extra=2 * holdout * measured["sft"]["heldout_review"],
    )
    add(
        "sample",
        1,
        "sample",
        math.ceil(c.samples / bs["sample"]),
        "batch",
        sampled["sample_batch"],
        "sample.batch_size",
    )
    add("score", 1, "score", c.samples, "text", scored["text"], "reward.batch_size")
    if any(METHODS[m].needs_reference for m in q.trainers):
        add(
            "reference",
            1,
            "reference",
            math.ceil(c.samples / min(q.reference.batch_size, c.samples)),
            "batch",
            measured["reference"]["batch"],
            "reference.batch_size",
        )
    for method, p in q.trainers.items():
        kind = f"train:{method}"
        if METHODS[method].trainer == "preference":
            monitor = measured[kind]["monitor_batch"] + bs["monitor"] * scored["text"]
            per_prompt = rows_per_prompt(METHODS[method].data, q.sample.n_per_prompt)
            steps = max(1, c.train_prompts * per_prompt // p.batch_size) * p.epochs
            every = q.monitor.reward_every
            checks = (steps // every + 1 + (steps % every > 0)) if bs["monitor"] else 0
            add(
                "train_pairwise",
                c.jobs[method],
                kind,
                steps,
                "step",
                measured[kind]["step"],
                trainer_change(method),
                extra=checks * monitor,
                method=method,
            )
        else:
            add(
                f"train_{METHODS[method].trainer}",
                c.jobs[method],
                kind,
                p.iterations,
                "iteration",
                measured[kind]["iteration"],
                trainer_change(method),
                method=method,
            )
    # an evaluation: its samples, their reward, the exact KL on its own and on pi_ref's samples
    # (pi_ref's side from its states); pi_ref's own: its samples, then three passes of pi_ref
    # (the KL, the reverse KL, the states), each half of a KL batch's two
    batches = math.ceil(c.eval_samples / bs["evaluate"])
    kl, scoring = measured["kl"], bs["evaluate"] * scored["text"]
    per_batch = kl["sample_batch"] + kl["batch"] + kl["reverse_batch"] + scoring
    add("evaluate", c.policies - 1, "kl", batches, "batch", per_batch, "evaluate.batch_size")
    per_batch = kl["sample_batch"] + 1.5 * kl["batch"] + scoring
    add("evaluate_reference", 1, "kl", batches, "batch", per_batch, "evaluate.batch_size")
    pool = c.eval_prompts * max(q.best_of_n.n)
    add(
        "best_of_n",
        c.best_of_n_jobs,
        "sample",
        math.ceil(pool / bs["evaluate"]),
        "batch",
        sampled["eval_batch"],
        "evaluate.batch_size",
        extra=pool * scored["text"],
    )
    for rule, jobs in c.cpu_jobs.items():  # the stages without torch: a process's start each
        rows.append(
            {
                "rule": rule,
                "method": "",
                "jobs": jobs,
                "threads": 1,
                "unit": "job",
                "units_per_job": 1,
                "seconds_per_unit": 0.0,
                "seconds_start": cpu_start,
                "seconds_per_job": cpu_start,
                "seconds_total": jobs * cpu_start,
                "peak_memory_mb": float("nan"),
                "fits": True,
                "change": "",
                "error": "",
            }
        )
    return pd.DataFrame(rows)


def kinds(q: Settings) -> list[str]:
    needs_reference = any(METHODS[m].needs_reference for m in q.trainers)
    return (
        ["sft", "sample", "score"]
        + (["reference"] if needs_reference else [])
        + [f"train:{m}" for m in q.trainers]
        + ["kl"]
    )


def study_seconds(table: pd.DataFrame, cores: int) -> float:
    """The study's wall time: each rule's time once per core its jobs hold, out of `cores` (jobs
    on every core run one after another; jobs of fewer threads share the cores)."""
    return float((table["seconds_total"] * table["threads"].clip(upper=cores)).sum() / cores)


def summary(table: pd.DataFrame, where: str, cores: int) -> str:
    lines = [
        f"preflight on {where}: projected wall time per rule (its jobs one after another)",
        f"  {'rule':<22}{'jobs':>5}{'threads':>8}{'per job':>12}{'total':>12}{'peak MB':>10}  fits",
    ]
    for r in table.itertuples():
        lines.append(
            f"  {(r.rule + ' ' + r.method).strip():<22}{r.jobs:>5}{r.threads:>8}"
            f"{duration(r.seconds_per_job):>12}{duration(r.seconds_total):>12}"
            f"{r.peak_memory_mb:>10.0f}  {'yes' if r.fits else 'NO: change ' + r.change}"
        )
    lines.append(
        f"  {'the study':<22}{int(table['jobs'].sum()):>5}{cores:>8}{'':>12}"
        f"{duration(study_seconds(table, cores)):>12}"
        "  (each job's time per core it holds, over the cores)"
    )
    return "\n".join(lines)


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def main(argv=None):
    args = cli.parse(__doc__, ["sft", "tokenizer"], ["out"], argv)
    q = read(Settings, args.params, "preflight")
    q = replace(q, trainers={m: trainer_settings(m, t) for m, t in q.trainers.items()})
    sft_reviews = len(io.read_parquet(args.sft, ["text"]))
    dev = device()
    inputs = Inputs(q, args.sft, args.tokenizer)
    where = (
        torch.cuda.get_device_name(0)
        if dev.type == "cuda"
        else f"the CPU, {q.threads.cores} cores, {precision(dev)}"
    )
    measured = {}
    for kind in kinds(q):
        log.info("measuring %s", kind)
        measured[kind] = run_kind(kind, inputs)
    table = projection(q, measured, cpu_stage_startup(), sft_reviews)
    table.insert(0, "device", where)
    table.insert(1, "cores", q.threads.cores)
    io.write_csv(table, args.out)
    print(summary(table, where, q.threads.cores), flush=True)
    if not table["fits"].all():
        log.warning(
            "does not fit: %s",
            "; ".join(
                f"{r.rule} ({r.error}): change {r.change}"
                for r in table[~table["fits"]].itertuples()
            ),
        )


if __name__ == "__main__":
    cli.run(main)
