"""Stage `plots`: the reward-vs-KL frontier, sentiment distributions and training curves.

- frontier.png: mean sentiment against KL(pi || pi_ref) on held-out prompts, one series per
  method over its sweep (aggregate rows, 95% bootstrap intervals as error bars), pi_ref marked;
  the DPO paper's figure 2 in this study's setting. Beside it, the same against the reverse
  KL(pi_ref || pi) (Best-of-N has none: its KL is the closed-form bound). An iterated method's
  later rounds are series of their own (dashed), each chain's rounds joined by a dotted line.
  Points along a run (`trajectory`) belong to their method's series; each run's path from pi_ref
  through its points to its final policy is drawn finely dotted. Where a point is the mean of
  several seeds, each seed's policy is a small dot of its method's colour around it: the spread
  the interval summarises.
  With a policy beyond 30 nats, the x axis turns logarithmic above 10 nats. On the forward-KL
  panel, the optimal frontier pi* (pipeline.stages.optimal, estimated from N samples of pi_ref per
  prompt) as a line with its 95% band, drawn only where its effective sample size is at least
  `min_ess`, and beyond that a dotted level: the optimum at a larger KL is at least pi*'s last
  reliable reward. (pi*_beta is the optimum for the forward KL only, so the reverse panel has none.)
- sentiment.png: the distribution of the true reward over evaluation samples, per policy.
- training.png: the trainers' metrics: the pairwise trainers' sampled reward and loss by step,
  PPO's and the other online methods' reward and KL by iteration.
"""

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import ScalarFormatter

from pipeline import cli, io
from pipeline.config import borrow, given, record
from pipeline.evaluations import POINT, policy_folders
from pipeline.logs import get_logger
from pipeline.methods import FAMILIES, METHODS, REFERENCE
from pipeline.paths import parse_policy_id, split_policy_id
from pipeline.settings import read

log = get_logger("plots")


@record
class Settings:
    """The `plots` rule's settings: the study's policies, with optimal.min_ess (pi*'s points of a
    smaller effective sample size are not drawn)."""

    policies: list[str] = given(
        "the study's policy ids; each names its samples and training metrics"
    )
    min_ess: borrow("optimal.min_ess")
    extensions: borrow("train.extensions")  # to parse the policy ids of methods of one's own


REFERENCE_STYLE = {"colour": "black", "label": "pi_ref (SFT)"}


def colour(method: str) -> str:
    return REFERENCE_STYLE["colour"] if method == "pi_ref" else METHODS[method].colour


def legend(method: str) -> str:
    return REFERENCE_STYLE["label"] if method == "pi_ref" else METHODS[method].label


MARKERS = "osD^v<>p"  # by round
MANY = 12  # more methods (or policies) than this: small multiples by family, rows, no legend
RUNAWAY_KL = (
    30.0  # nats: a policy this far out (a run-away later round) switches the x axis to symlog
)


def label(method: str, value, rnd=1, at=1.0) -> str:
    if method == "pi_ref":
        return "pi_ref"
    return f"{method} {value:g}" + (f" r{rnd}" if rnd > 1 else "") + (f" @{at:g}" if at < 1 else "")


def optimal_line(ax, optimal: pd.DataFrame, kl: str, min_ess: float, right: float) -> None:
    """pi*'s frontier where its estimate rests on at least `min_ess` effective samples, then its
    lower bound (the optimal reward cannot fall as the KL grows) up to `right`."""
    drawn = optimal[optimal["ess"] >= min_ess].sort_values("kl")
    if drawn.empty:
        return
    label = (
        f"pi* (estimated from {drawn['pool_size'].iloc[0]} samples of pi_ref;"
        f" drawn where ESS >= {min_ess:g})"
    )
    ax.plot(drawn[kl], drawn["sentiment"], color="black", lw=2, ls="--", label=label, zorder=3)
    ax.fill_between(
        drawn[kl], drawn["sentiment_lo"], drawn["sentiment_hi"], color="black", alpha=0.12, lw=0
    )
    end = drawn.iloc[-1]
    if right > end[kl]:
        ax.plot(
            [end[kl], right],
            [end["sentiment"]] * 2,
            color="black",
            lw=1,
            ls=":",
            zorder=1,
            label=f"the optimum beyond KL {end[kl]:.2f}: at least {end['sentiment']:.3f}",
        )


def reference_point(ax, ref) -> None:
    ax.axhline(ref["sentiment"], color="grey", lw=0.8, ls=":")
    ax.plot(
        [0],
        [ref["sentiment"]],
        marker="*",
        ms=16,
        color="black",
        ls="none",
        label=f"{legend('pi_ref')}: {ref['sentiment']:.3f}",
    )


def series(ax, points: pd.DataFrame, kl: str, muted: bool = False, start=None) -> None:
    """Each (method, round) of `points` as a line over its swept values (and the points along
    their runs), sorted by KL, with 95% intervals; with points along the runs, each run's
    trajectory dotted from pi_ref's reward `start` through them; `muted`: drawn thin and pale, as
    the yardsticks of a panel about other methods."""
    for (method, rnd), rows in points.groupby(["method", "round"], sort=False):
        rows = rows.sort_values(kl)
        xerr = [rows["kl"] - rows["kl_lo"], rows["kl_hi"] - rows["kl"]] if kl == "kl" else None
        name = legend(method) + (f", round {rnd:g}" if rnd > 1 else "")
        ax.errorbar(
            rows[kl],
            rows["sentiment"],
            xerr=xerr,
            yerr=[
                rows["sentiment"] - rows["sentiment_lo"],
                rows["sentiment_hi"] - rows["sentiment"],
            ],
            marker=MARKERS[(int(rnd) - 1) % len(MARKERS)],
            capsize=0 if muted else 3,
            ls="-" if rnd == 1 else "--",
            color=colour(method),
            label=name,
            alpha=0.35 if muted else 1.0,
            lw=1 if muted else 1.5,
            ms=4 if muted else 6,
        )
        if not muted:
            for r in rows.itertuples():
                ax.annotate(
                    f"{r.value:g}" + (f" @{r.at:g}" if getattr(r, "at", 1) < 1 else ""),
                    (getattr(r, kl), r.sentiment),
                    textcoords="offset points",
                    xytext=(5, -12),
                    fontsize=8,
                    color=colour(method),
                )
    if muted:
        return
    final = points[points["at"] == 1] if "at" in points else points
    for (method, _), chain in final.groupby(["method", "value"], sort=False):
        if len(chain) > 1:  # one policy's path through the rounds
            chain = chain.sort_values("round")
            ax.plot(chain[kl], chain["sentiment"], ls=":", lw=1, color=colour(method))
    if "at" in points:  # each run's path: from where it starts through its points to its end
        for (method, _, rnd), run in points.groupby(["method", "value", "round"], sort=False):
            if len(run) > 1:
                run = run.sort_values("at")
                xs, ys = list(run[kl]), list(run["sentiment"])
                if rnd == 1 and start is not None:
                    xs, ys = [0.0, *xs], [start, *ys]
                ax.plot(xs, ys, ls=(0, (1, 2)), lw=1.2, color=colour(method), alpha=0.7)


def seed_spread(table: pd.DataFrame) -> pd.DataFrame:
    """The policy rows behind each aggregate point of two seeds or more (none in a one-seed
    study, whose points are their policies)."""
    keys = [k for k in POINT if k in table]
    several = table[(table["kind"] == "aggregate") & (table["n_seeds"] >= 2)][keys]
    return table[table["kind"] == "policy"].merge(several, on=keys)


def seeds(ax, spread: pd.DataFrame, kl: str) -> None:
    """Each seed's policy as a small dot, under the means and their intervals."""
    spread = spread.dropna(subset=[kl])
    if spread.empty:
        return
    ax.scatter(
        spread[kl],
        spread["sentiment"],
        s=14,
        c=[colour(m) for m in spread["method"]],
        alpha=0.5,
        lw=0,
        zorder=1,
        label=f"one seed's policy (the means of {spread['seed'].nunique()} seeds have intervals)",
    )


def kl_axis(ax, points: pd.DataFrame, kl: str, xlabel: str) -> None:
    if points[kl].max() > RUNAWAY_KL:  # keep the others readable: log scale beyond 10 nats
        ax.set_xscale("symlog", linthresh=10, linscale=2)
        ax.set_xticks(
            [t for t in (0, 2, 4, 6, 8, 10, 20, 40, 80, 160, 320) if t < 1.5 * points[kl].max()]
        )
        ax.xaxis.set_major_formatter(ScalarFormatter())
        xlabel += " (log scale above 10)"
    ax.set_xlabel(xlabel)
    ax.set_xlim(left=-0.5)
    ax.grid(alpha=0.3)


def legend_below(fig: plt.Figure, handles: list, labels: list[str], most: int = 4) -> int:
    """One legend for the figure, centred under its panels, in as many columns (up to `most`)
    as fit its width: long labels in many columns run past the figure's edges and are cut off.
    Returns the legend's rows."""
    renderer = fig.canvas.get_renderer()
    for ncol in range(min(most, len(labels)), 0, -1):
        legend = fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=9)
        if ncol == 1 or legend.get_window_extent(renderer).width <= fig.bbox.width:
            return -(-len(labels) // ncol)
        legend.remove()


def frontier(table: pd.DataFrame, optimal: pd.DataFrame, min_ess: float, path: Path) -> None:
    """Sentiment against the forward KL (with 95% intervals) and the optimal frontier pi*; beside
    it, the same policies against the reverse KL."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5), sharey=True)
    ref = table[table["method"] == "pi_ref"].iloc[0]
    agg = table[table["kind"] == "aggregate"]
    spread = seed_spread(table)
    for ax, kl, xlabel in [
        (axes[0], "kl", "KL(pi || pi_ref) per response, nats (exact, on the policy's samples)"),
        (axes[1], "kl_reverse", "KL(pi_ref || pi) per response, nats (exact, on pi_ref's samples)"),
    ]:
        reference_point(ax, ref)
        if kl == "kl":
            optimal_line(ax, optimal, kl, min_ess, right=1.05 * agg["kl_hi"].max())
        points = agg.dropna(subset=[kl])
        series(ax, points, kl, start=ref["sentiment"])
        seeds(ax, spread, kl)
        kl_axis(ax, points, kl, xlabel)
    axes[0].set_ylabel("mean sentiment p(positive) on held-out prompts")
    over = " and ".join(sorted(set(agg["ci_over"].dropna())))
    axes[0].set_title(f"Reward vs KL(pi || pi_ref) frontier (95% intervals over {over})")
    axes[1].set_title("the same policies against the reverse KL(pi_ref || pi)")
    # one legend under both panels, where it hides no point
    rows = legend_below(fig, *axes[0].get_legend_handles_labels())
    fig.tight_layout(rect=(0, 0.06 * rows, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


YARDSTICKS = ("dpo", "ppo")  # drawn, muted, in every panel of the by-family figure


def frontier_by_family(
    table: pd.DataFrame, optimal: pd.DataFrame, min_ess: float, path: Path
) -> None:
    """The full table's frontier as small multiples: one panel per family of methods (the
    records' `family`), each with pi_ref, pi* and, muted, DPO and PPO, on shared axes; the
    forward KL only (the reverse KL is in the table)."""
    ref = table[table["method"] == "pi_ref"].iloc[0]
    agg = table[table["kind"] == "aggregate"].dropna(subset=["kl"])
    present = {METHODS[m].family for m in agg["method"].unique()}
    families = [f for f in FAMILIES if f in present] + sorted(present - set(FAMILIES))
    cols = min(3, len(families))
    rows = -(-len(families) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(5.2 * cols, 4.6 * rows), sharex=True, sharey=True, squeeze=False
    )
    yardsticks = agg[agg["method"].isin(YARDSTICKS) & (agg["round"] == 1)]
    common = {}  # pi_ref, pi* and the yardsticks: one legend for the figure
    for ax, family in zip(axes.flat, families):
        reference_point(ax, ref)
        optimal_line(ax, optimal, "kl", min_ess, right=1.05 * agg["kl_hi"].max())
        own = agg["method"].map(lambda m: METHODS[m].family == family)
        series(
            ax,
            yardsticks[~yardsticks["method"].map(lambda m: METHODS[m].family == family)],
            "kl",
            muted=True,
        )
        shared = dict(zip(*reversed(ax.get_legend_handles_labels())))
        series(ax, agg[own], "kl", start=ref["sentiment"])
        kl_axis(ax, agg, "kl", "KL(pi || pi_ref), nats")
        ax.set_title(family, fontsize=11)
        handles, labels = ax.get_legend_handles_labels()
        mine = [(h, lab) for h, lab in zip(handles, labels) if lab not in shared]
        ax.legend(*zip(*mine), fontsize=7, loc="lower right")
        common |= shared
    for ax in axes.flat[len(families) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("mean sentiment, held-out prompts")
    fig.suptitle(
        "Reward vs KL(pi || pi_ref) by family of methods (DPO and PPO drawn pale in the"
        " other panels)",
        fontsize=12,
    )
    fig.legend(list(common.values()), list(common), loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sentiment(scores: dict[str, pd.Series], path: Path) -> None:
    names = list(scores)
    wide = len(names) <= MANY  # side by side; beyond that, one row per policy
    size = (max(6, 0.9 * len(names) + 2), 4.5) if wide else (8, 0.32 * len(names) + 1.5)
    fig, ax = plt.subplots(figsize=size)
    parts = ax.violinplot(
        [scores[n].to_numpy() for n in names], showmeans=True, widths=0.8, vert=wide
    )
    for body, name in zip(parts["bodies"], names):
        body.set_facecolor(colour(name.split()[0]))
        body.set_alpha(0.5)
    for key in ("cmeans", "cmins", "cmaxes", "cbars"):
        parts[key].set_color("black")
    if wide:
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
        ax.set_ylabel("sentiment p(positive) per sample")
        ax.set_ylim(0, 1)
    else:
        ax.set_yticks(range(1, len(names) + 1), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("sentiment p(positive) per sample")
        ax.set_xlim(0, 1)
    ax.set_title("Distribution of the true reward on held-out prompts (bar: mean)")
    ax.grid(axis="y" if wide else "x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def training(curves: dict[str, pd.DataFrame], path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    seen: dict[str, int] = {}
    for name, m in curves.items():
        method = name.split()[0]
        seen[method] = seen.get(method, -1) + 1
        # one colour per method, one line style per policy of that method
        style = {
            "color": colour(method),
            "label": name,
            "alpha": 0.85,
            "ls": ["-", "--", ":", "-."][seen[method] % 4],
        }
        if "iteration" in m:  # PPO and the online methods
            axes[1, 0].plot(m["iteration"], m["reward"], **style)
            axes[1, 1].plot(m["iteration"], m["kl"], **style)
        else:
            reward = m.dropna(subset=["sample_reward"])
            axes[0, 0].plot(reward["step"], reward["sample_reward"], marker="o", ms=3, **style)
            loss = m.dropna(subset=["loss"])
            axes[0, 1].plot(loss["step"], loss["loss"].rolling(10, min_periods=1).mean(), **style)
    titles = [
        ("pairwise: true reward of the policy's samples", "step", "sentiment"),
        ("pairwise: loss (rolling mean of 10 steps)", "step", "loss"),
        (
            "online: rollout reward (ppo_rm: the learned reward, standardised)",
            "iteration",
            "reward",
        ),
        ("online: KL(pi || pi_ref) of the rollouts (k1)", "iteration", "nats"),
    ]
    for ax, (title, x, y) in zip(axes.flat, titles):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
        if ax.has_data() and len(curves) <= MANY:
            ax.legend(fontsize=8)
    axes[0, 1].set_yscale("symlog")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = cli.parse(
        __doc__,
        ["table", "optimal", "samples", "metrics"],
        ["frontier", "sentiment", "training"],
        argv,
        optional=("metrics",),
        lists=("samples", "metrics"),
    )
    p = read(Settings, args.params, "plots")
    policies = p.policies
    folders = policy_folders(policies, args.samples, names=("samples.parquet",))
    trained = [
        pid
        for pid in policies
        if pid != REFERENCE
        and METHODS[split_policy_id(pid).method].trainer
        and split_policy_id(pid).at is None  # a run's final policy: its metrics are the run's
    ]
    runs = policy_folders(trained, args.metrics or [], names=("metrics.csv",))
    table = pd.read_csv(args.table)
    optimal = pd.read_csv(args.optimal)
    scores, curves = {}, {}
    for pid in policies:
        meta = parse_policy_id(pid)
        name = label(meta["method"], meta["value"], meta["round"], meta["at"])
        if meta["method"] != "pi_ref" and METHODS[meta["method"]].trainer:
            name += f" s{meta['seed']}"
            if pid in runs:
                curves[name] = pd.read_csv(runs[pid] / "metrics.csv")
        scores[name] = io.read_parquet(folders[pid] / "samples.parquet", ["score"])["score"]
    draw_frontier = frontier if table["method"].nunique() <= MANY else frontier_by_family
    with io.atomic_output(args.frontier) as tmp:
        draw_frontier(table, optimal, p.min_ess, tmp)
    for draw, data, out in [(sentiment, scores, args.sentiment), (training, curves, args.training)]:
        with io.atomic_output(out) as tmp:
            draw(data, tmp)
    log.info("plots -> %s, %s, %s", args.frontier, args.sentiment, args.training)


if __name__ == "__main__":
    cli.run(main)
