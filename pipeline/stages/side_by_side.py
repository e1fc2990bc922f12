"""Stage `side_by_side`: what the policies write, from their evaluation samples (no new sampling).

Two views of `results/eval/<policy>/samples.parquet`, written as Markdown (results/samples.md)
and as an HTML page of the Snakemake report (results/samples.html):
- `prompts` evaluation prompts, drawn with `seed` from those that every policy was evaluated on
  (then in prompt order), one block each: every policy's first sample of that prompt, pi_ref
  first, then the policies in the table's order;
- per policy, its `extremes` highest- and `extremes` lowest-reward samples over every evaluation
  prompt (never one sample in both: a policy with fewer than 2 x `extremes` samples shows fewer
  lowest; ties: prompt order).
Reward: the true reward p(positive) of prompt + completion; KL: the sample's KL(pi || pi_ref) in
nats, exact per token and summed over the response (Best-of-N: the closed-form bound).
"""

import html
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline import cli, io
from pipeline.config import SideBySide, borrow, given, record
from pipeline.evaluations import policy_folders
from pipeline.logs import get_logger
from pipeline.paths import parse_policy_id
from pipeline.settings import read

log = get_logger("side_by_side")

SAMPLE_COLUMNS = ["prompt_id", "sample_id", "completion", "score", "kl"]


@record
class Settings(SideBySide):
    """The `side_by_side` rule's settings: config section `side_by_side`, with the policies of
    results/table.csv."""

    policies: list[str] = given("pi_ref first, then in the table's order; each names its samples")
    extensions: borrow("train.extensions")  # to parse the policy ids of methods of one's own


@dataclass
class Block:
    """One table of the page: a heading, a line under it, and rows of cells under `columns`."""

    heading: str
    note: str
    columns: list[str]
    rows: list[list[str]]


def policy_label(pid: str) -> str:
    """pi_ref, or e.g. "dpo beta=0.1 seed 0" (", round 2" after a later round; ", at 0.5 of its
    run" for a point along a run)."""
    meta = parse_policy_id(pid)
    if meta["method"] == "pi_ref":
        return "pi_ref"
    name = f"{meta['method']} {meta['param']}={meta['value']:g} seed {meta['seed']}"
    name += f", round {meta['round']}" if meta["round"] > 1 else ""
    return name + (f", at {meta['at']:g} of its run" if meta["at"] < 1 else "")


def choose_prompts(samples: dict[str, pd.DataFrame], n: int, seed: int) -> list[int]:
    """`n` prompt ids drawn with `seed` from those every policy has samples of, in prompt order."""
    shared = sorted(set.intersection(*(set(s["prompt_id"]) for s in samples.values())))
    if not 1 <= n <= len(shared):
        raise ValueError(
            f"side_by_side.prompts = {n}, but every policy was evaluated on only"
            f" {len(shared)} shared prompts (evaluate.n_prompts)"
        )
    return sorted(np.random.default_rng(seed).choice(shared, size=n, replace=False).tolist())


NUMERIC = ("reward", "KL")  # columns aligned right


def measures(row) -> list[str]:
    return [f"{row.score:.3f}", f"{row.kl:.2f}"]


def prompt_blocks(samples: dict[str, pd.DataFrame], prompts: pd.Series, chosen: list[int]):
    """One block per chosen prompt: each policy's first sample of it."""
    blocks = []
    for pid in chosen:
        rows = []
        for policy, table in samples.items():
            first = table[table["prompt_id"] == pid].sort_values("sample_id").iloc[0]
            rows.append([policy_label(policy), *measures(first), first.completion])
        blocks.append(
            Block(
                f'Prompt {pid}: "{prompts[pid]}"',
                "",
                ["policy", "reward", "KL", "completion"],
                rows,
            )
        )
    return blocks


def extreme_blocks(samples: dict[str, pd.DataFrame], prompts: pd.Series, k: int):
    """Per policy, its `k` highest- and `k` lowest-reward samples, with their prompts."""
    blocks = []
    for policy, table in samples.items():
        ranked = table.sort_values(["prompt_id", "sample_id"]).sort_values(
            "score", ascending=False, kind="stable"
        )
        high = ranked.head(k)
        low = ranked.iloc[k:].sort_values("score", kind="stable").head(k)
        rows = [
            [which, *measures(r), prompts[r.prompt_id], r.completion]
            for which, part in (("highest", high), ("lowest", low))
            for r in part.itertuples()
        ]
        note = (
            f"mean reward {table['score'].mean():.3f}, mean KL {table['kl'].mean():.2f} over"
            f" {len(table)} samples of {table['prompt_id'].nunique()} prompts"
        )
        blocks.append(
            Block(policy_label(policy), note, ["", "reward", "KL", "prompt", "completion"], rows)
        )
    return blocks


def intro(n_policies: int, n_prompts: int, seed: int) -> str:
    return (
        f"Evaluation samples of {n_policies} policies, no new sampling: {n_prompts} prompts"
        f" drawn with seed {seed}, each policy's first sample of each, pi_ref first; then each"
        " policy's highest- and lowest-reward samples. Reward: p(positive) of prompt +"
        " completion (the true reward). KL: the sample's KL(pi || pi_ref) in nats."
    )


# what would make markup in a table cell: emphasis, code, links, HTML, cell borders (an
# underscore inside a word, as in pi_ref, makes none)
MARKUP = re.compile(r"[\\`*\[\]<>|]|(?<!\w)_|_(?!\w)")


def markdown_cell(text: str) -> str:
    """Text as one cell of a Markdown table: on one line, its markup characters escaped."""
    return MARKUP.sub(lambda m: "\\" + m[0], " ".join(text.split()))


def to_markdown(title: str, lead: str, sections: list[tuple[str, list[Block]]]) -> str:
    lines = [f"# {title}", "", lead, ""]
    for name, blocks in sections:
        lines += [f"## {name}", ""]
        for b in blocks:
            lines += [f"### {markdown_cell(b.heading)}", ""] + ([b.note, ""] if b.note else [])
            lines += [
                "| " + " | ".join(b.columns) + " |",
                "|" + "|".join("---:" if c in NUMERIC else "---" for c in b.columns) + "|",
            ]
            lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in b.rows]
            lines.append("")
    return "\n".join(lines)


STYLE = (
    "body{font-family:sans-serif;max-width:75em;margin:1em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin-bottom:1.5em;width:100%}"
    "td,th{border:1px solid #ccc;padding:.25em .5em;vertical-align:top;text-align:left}"
    "td.num{text-align:right;white-space:nowrap}tr:nth-child(even){background:#f6f6f6}"
)


def to_html(title: str, lead: str, sections: list[tuple[str, list[Block]]]) -> str:
    e = html.escape
    out = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{e(title)}</h1><p>{e(lead)}</p>"
    ]
    for name, blocks in sections:
        out.append(f"<h2>{e(name)}</h2>")
        for b in blocks:
            out.append(f"<h3>{e(b.heading)}</h3>" + (f"<p>{e(b.note)}</p>" if b.note else ""))
            out.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in b.columns) + "</tr>")
            for row in b.rows:
                out.append(
                    "<tr>"
                    + "".join(
                        f"<td class='num'>{e(v)}</td>" if c in NUMERIC else f"<td>{e(v)}</td>"
                        for c, v in zip(b.columns, row)
                    )
                    + "</tr>"
                )
            out.append("</table>")
    return "\n".join(out + ["</body></html>", ""])


def build(samples: dict[str, pd.DataFrame], prompts: pd.Series, n: int, k: int, seed: int):
    """(title, lead, sections) of the page; `samples` in display order, pi_ref first."""
    missing = sorted(set().union(*(s["prompt_id"] for s in samples.values())) - set(prompts.index))
    if missing:
        raise ValueError(
            f"prompt id(s) {missing[:5]} of the evaluation samples are not in the"
            " evaluation prompts"
        )
    chosen = choose_prompts(samples, n, seed)
    sections = [
        ("The same prompts", prompt_blocks(samples, prompts, chosen)),
        ("Each policy's highest- and lowest-reward samples", extreme_blocks(samples, prompts, k)),
    ]
    return "Completions side by side", intro(len(samples), n, seed), sections


def main(argv=None):
    args = cli.parse(
        __doc__, ["prompts", "samples"], ["markdown", "html"], argv, lists=("samples",)
    )
    p = read(Settings, args.params, "side_by_side")
    policies = p.policies
    if not policies or parse_policy_id(policies[0])["method"] != "pi_ref":
        raise ValueError(f"the policies must start with pi_ref; got {policies[:3]}")
    prompts = io.read_parquet(args.prompts, ["prompt_id", "prompt"])
    prompts = prompts.set_index("prompt_id")["prompt"]
    folders = policy_folders(policies, args.samples, names=("samples.parquet",))
    samples = {}
    for pid in policies:
        path = folders[pid] / "samples.parquet"
        samples[pid] = io.read_parquet(path, SAMPLE_COLUMNS)
        if samples[pid].empty:
            raise ValueError(f"{path}: no samples")
    page = build(samples, prompts, p.prompts, p.extremes, p.seed)
    with io.atomic_output(args.markdown) as tmp:
        tmp.write_text(to_markdown(*page))
    with io.atomic_output(args.html) as tmp:
        tmp.write_text(to_html(*page))
    log.info(
        "%d prompts x %d policies, and each policy's %d highest and lowest -> %s, %s",
        p.prompts,
        len(policies),
        p.extremes,
        args.markdown,
        args.html,
    )


if __name__ == "__main__":
    cli.run(main)
