"""Pictures of an experiment, drawn from what is on disk (matplotlib, headless).

Five figures: learning curves, parallel coordinates of the swept parameters,
each parameter's effect on the metric, parameter importance, and the best
value found so far against wall time and against trial-epochs.  Colours are
the Okabe-Ito palette and cividis, both readable with colour-blindness.

Trials are grouped by a parameter's value, and the value is shown by its label
(`labels.py`); every text stays inside the figure at any trial count (titles
wrap, the layout is constrained).
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tune_pipeline.experiment import (FAILED, FAILED_STATE, FINISHED_STATE, STOPPED_STATE, Experiment,
                                      Trial)
from tune_pipeline.labels import Labeller, key, labellers, number
from tune_pipeline.metrics import METRICS, best_of, fmt, oriented, selection_note

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
FAILED_COLOUR = "#D55E00"
DPI = 110
FEW_VALUES = 6  # a numeric parameter with at most this many values is ticked at each
MANY_CURVES = 40  # more other trials than this: learning curves draw them as a band
MAX_POINTS = 300  # parameter effects draw at most this many trials' points per panel


class NothingToPlot(Exception):
    """No trial has a result yet (all failed early, or none started)."""


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # no display needed, ever
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 10, "axes.titlesize": 12, "axes.labelsize": 10,
                         "legend.fontsize": 8, "figure.autolayout": False})
    return plt


def _figure(width: float, height: float, **kwargs):
    plt = _pyplot()
    return plt.subplots(figsize=(width, height), layout="constrained", **kwargs)


def _wrap(text: str, width_inches: float, fontsize: float) -> str:
    """A title broken into lines that fit the figure's width."""
    chars = max(20, int(width_inches * 72 / (fontsize * 0.62)))
    return "\n".join(textwrap.wrap(text, chars)) or text


def metric_mode(experiment: Experiment, metric: str | None) -> tuple[str, str]:
    metric = metric or experiment.metric
    return metric, experiment.mode_for(metric)


def is_numeric(values: list) -> bool:
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def is_log_scale(values: list) -> bool:
    """Log axes for positive values spanning more than a factor of 20 (learning
    rates, weight decays): a linear axis would squash all but the largest."""
    return is_numeric(values) and min(values) > 0 and max(values) / min(values) > 20


def max_epochs(experiment: Experiment) -> int:
    planned = [t.config.get("epochs") for t in experiment.trials if isinstance(t.config.get("epochs"), int)]
    return max(planned) if planned else max((t.epochs for t in experiment.trials), default=0)


def _curve(trial: Trial, metric: str) -> tuple[list, list]:
    points = [(h.get("epoch"), h[metric]) for h in trial.history if h.get(metric) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _varying(trials: list[Trial], swept: list[str]) -> list[str]:
    """The swept keys whose values differ between `trials` (all keys when none do)."""
    return [k for k in swept if len({key(t.config.get(k)) for t in trials}) > 1] or swept


def _others_band(ax, others: list[tuple[list, list]], label: str) -> None:
    """Many curves as one light band: at each epoch, the middle 80% and 50%
    of the trials that reached it, and their median."""
    import numpy as np

    by_epoch: dict = {}
    for xs, ys in others:
        for x, y in zip(xs, ys):
            by_epoch.setdefault(x, []).append(y)
    epochs = sorted(e for e in by_epoch if isinstance(e, (int, float)))
    q = np.array([np.percentile(by_epoch[e], [10, 25, 50, 75, 90]) for e in epochs])
    ax.fill_between(epochs, q[:, 0], q[:, 4], color="#888888", alpha=0.18, lw=0, zorder=1,
                    label=f"{label}: middle 80% at each epoch")
    ax.fill_between(epochs, q[:, 1], q[:, 3], color="#888888", alpha=0.3, lw=0, zorder=1, label="middle 50%")
    ax.plot(epochs, q[:, 2], color="#666666", lw=1.2, ls="--", zorder=2, label="median")


def draw_learning_curves(experiment: Experiment, metric: str | None = None, top: int = 5):
    """The top N trials' curves on top of the others: each other trial a thin
    grey line while they are few (MANY_CURVES), a light band when they are many."""
    metric, mode = metric_mode(experiment, metric)
    ranked = experiment.ranked(metric, mode)
    if not ranked:
        raise NothingToPlot(f"no trial has reported {metric}")
    best = ranked[:top]
    planned = max_epochs(experiment)
    # Only what differs between the highlighted trials tells their lines apart,
    # labelled among them: 3 digits tell 5 learning rates apart where 5,000 need 8.
    varying = _varying(best, experiment.swept)
    by = labellers((t.config for t in best), varying)
    width = 10.0
    fig, ax = _figure(width, 6.4)
    highlighted = {id(t) for t in best}
    others = [(trial, experiment.state(trial)) for trial in experiment.trials
              if id(trial) not in highlighted and trial.history]
    curves = [(_curve(trial, metric), state) for trial, state in others]
    curves = [(c, state) for c, state in curves if c[0]]
    counts: dict[str, int] = {}
    for _, state in curves:
        counts[state] = counts.get(state, 0) + 1
    what = ", ".join(f"{n} {state}" for state, n in counts.items())
    if len(curves) > MANY_CURVES:
        _others_band(ax, [c for c, _ in curves], f"the other {len(curves):,} trials ({what})")
    else:
        styles = {STOPPED_STATE: dict(ls="--", lw=1), FAILED_STATE: dict(ls=":", lw=1.2, color=FAILED_COLOUR),
                  FINISHED_STATE: dict(lw=1)}
        alpha = min(0.5, max(0.15, 6 / max(len(curves), 1)))
        seen = set()
        for (xs, ys), state in curves:
            style = {"color": "#888888", "alpha": alpha, "lw": 1, **styles.get(state, {})}
            ax.plot(xs, ys, label=None if state in seen else f"other trials: {state}", zorder=1, **style)
            if state == FAILED_STATE:
                ax.plot(xs[-1:], ys[-1:], "x", color=FAILED_COLOUR, ms=7, zorder=1)
            seen.add(state)
    ids = Labeller(t.trial_id for t in experiment.trials)  # the part of the id that differs
    for colour, trial in zip(OKABE_ITO, best):
        xs, ys = _curve(trial, metric)
        values = ", ".join(by[k](trial.config.get(k)) for k in varying)
        state = experiment.state(trial)
        ls = "--" if state == STOPPED_STATE else "-"
        note = f" ({state})" if state in (STOPPED_STATE, FAILED_STATE) else ""
        ax.plot(xs, ys, color=colour, lw=2.2, ls=ls, marker="o", ms=3, zorder=3,
                label=(f"{ids(trial.trial_id)}: {values}" if values else ids(trial.trial_id)) + note)
        if state == FAILED_STATE:
            ax.plot(xs[-1:], ys[-1:], "x", color=FAILED_COLOUR, ms=9, mew=2, zorder=3)
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    _metric_scale(ax.yaxis, metric)
    ax.set_title(_wrap(f"{experiment.name}: {metric} per epoch (top {len(best)} of {len(ranked)} highlighted, "
                       f"{selection_note(metric)})", width, 12))
    ax.grid(alpha=0.3)
    if planned:
        ax.set_xlim(0.8, max(planned, 1) + 0.2)
    # Below the axes: a legend inside would cover the curves it names.
    title = _wrap(f"trial: {', '.join(varying)}" if varying else "trial", width, 8)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, framealpha=0.8,
               title=title, title_fontsize=8)
    return fig


def learning_curves(experiment: Experiment, path: Path, metric: str | None = None, top: int = 5) -> Path:
    return _save(draw_learning_curves(experiment, metric, top), path)


def _metric_scale(axis, metric: str) -> None:
    """Accuracies in percent on every axis, as in every table (metrics.py)."""
    if metric in METRICS and METRICS[metric].kind == "fraction":
        from matplotlib.ticker import PercentFormatter
        axis.set_major_formatter(PercentFormatter(1.0))


def axis_positions(values: list, show=None) -> tuple[list[float], list[float], list[str], bool]:
    """Values mapped to [0, 1], with tick positions and labels for one axis:
    categories one position each; numbers with few values ticked at each
    value; many numbers at their ends and middle."""
    labeller = Labeller(values)
    if is_numeric(values):
        log = is_log_scale(values)
        tx = [math.log10(v) for v in values] if log else [float(v) for v in values]
        lo, hi = min(tx), max(tx)
        span = (hi - lo) or 1.0
        pos = [(v - lo) / span if hi > lo else 0.5 for v in tx]
        if len(labeller.values) <= FEW_VALUES:
            ticks = sorted({p: None for p in pos})
            by_pos = {p: v for p, v in zip(pos, values)}
            return pos, ticks, [(show or labeller)(by_pos[t]) for t in ticks], log
        ticks = [0.0, 0.5, 1.0]
        return pos, ticks, [(show or number)(10 ** (lo + t * span) if log else lo + t * span) for t in ticks], log
    distinct = labeller.values
    step = 1.0 / max(len(distinct) - 1, 1)
    index = {key(v): (i * step if len(distinct) > 1 else 0.5) for i, v in enumerate(distinct)}
    return [index[key(v)] for v in values], [index[key(v)] for v in distinct], labeller.labels, False


def line_alpha(count: int) -> float:
    """Opacity for `count` overlapping lines: one reads alone, thousands build
    a density where they agree instead of a solid band."""
    return min(0.9, max(0.03, 20 / max(count, 1)))


def draw_parallel_coordinates(experiment: Experiment, metric: str | None = None, top: int = 5):
    plt = _pyplot()
    from matplotlib import cm, colors
    from matplotlib.collections import LineCollection

    metric, mode = metric_mode(experiment, metric)
    trials = experiment.ranked(metric, mode)
    swept = experiment.swept
    if not trials:
        raise NothingToPlot(f"no trial has reported {metric}")
    if not swept:
        return None
    scores = [t.best_value(metric, mode) for t in trials]
    norm = colors.Normalize(min(scores), max(scores) if max(scores) > min(scores) else min(scores) + 1e-9)
    cmap = plt.colormaps["cividis"]
    columns = swept + [metric]
    axes_data = [axis_positions([t.config.get(k) for t in trials]) for k in swept]
    axes_data.append(axis_positions(scores, show=lambda v: fmt(metric, v)))
    # 2.6 inches per axis leaves room for the value labels beside each.
    width = max(8.0, 2.6 * len(columns))
    fig, ax = _figure(width, 5.8)
    # Worst first, so the best lines are drawn on top; the top N again, opaque.
    order = sorted(range(len(trials)), key=lambda i: oriented(scores[i], mode))
    xs = list(range(len(columns)))
    alpha = line_alpha(len(trials))
    many = LineCollection([list(zip(xs, [a[0][i] for a in axes_data])) for i in order],
                          colors=[(*cmap(norm(scores[i]))[:3], alpha) for i in order],
                          linewidths=1.4 if len(trials) <= 100 else 0.8, zorder=2)
    ax.add_collection(many)
    if alpha < 0.9:
        for i in order[-top:]:
            ax.plot(xs, [a[0][i] for a in axes_data], color=cmap(norm(scores[i])), lw=2.2, alpha=1.0, zorder=3)
    for x, (name, (_, ticks, labels, log)) in enumerate(zip(columns, axes_data)):
        ax.axvline(x, color="#444444", lw=0.8)
        for t, label in zip(ticks, labels):
            ax.text(x + 0.03, t, label, fontsize=8, va="center", ha="left", zorder=4,
                    bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.7))
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([f"{c}\n(log)" if a[3] else c for c, a in zip(columns, axes_data)], fontsize=9)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlim(-0.2, len(columns) - 0.3)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if max(scores) > min(scores):  # one score needs no scale
        bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=f"best {metric}", pad=0.02)
        _metric_scale(bar.ax.yaxis, metric)
    count = f"{len(trials)} trial{'s' if len(trials) != 1 else ''}"
    top_note = f"; the top {min(top, len(trials))} opaque" if alpha < 0.9 else ""
    ax.set_title(_wrap(f"{experiment.name}: swept parameters, coloured by best {metric} ({count}{top_note})",
                       width - 1.2, 12))
    return fig


def parallel_coordinates(experiment: Experiment, path: Path, metric: str | None = None,
                         top: int = 5) -> Path | None:
    fig = draw_parallel_coordinates(experiment, metric, top)
    return _save(fig, path) if fig is not None else None


def thinned(count: int, most: int = MAX_POINTS) -> list[int]:
    """Which of `count` trials to draw as points: all up to `most`, else a
    fixed random `most` of them (the same picture each time), in order."""
    if count <= most:
        return list(range(count))
    import random
    return sorted(random.Random(0).sample(range(count), most))


def draw_parameter_effects(experiment: Experiment, metric: str | None = None):
    """Each parameter's values against the best metric: boxes from every
    trial, over the points of at most MAX_POINTS of them (so the points show
    the spread without hiding the boxes)."""
    metric, mode = metric_mode(experiment, metric)
    trials = experiment.ranked(metric, mode)
    if not trials:
        raise NothingToPlot(f"no trial has reported {metric}")
    swept = experiment.swept
    if not swept:
        return None
    cols = min(3, len(swept))
    rows = math.ceil(len(swept) / cols)
    width = 4.8 * cols
    fig, axes = _figure(width, 3.8 * rows + 0.6, nrows=rows, ncols=cols, squeeze=False)
    scores = [t.best_value(metric, mode) for t in trials]
    drawn = thinned(len(trials))
    size = 18 if len(drawn) <= 50 else 8
    alpha = min(0.7, max(0.35, 25 / len(drawn)))
    for ax, name in zip(axes.flat, swept):
        values = [t.config.get(name) for t in trials]
        labeller = Labeller(values)
        if is_numeric(values) and len(labeller.values) > FEW_VALUES:
            ax.scatter([values[i] for i in drawn], [scores[i] for i in drawn], s=size, color=OKABE_ITO[0],
                       alpha=alpha, lw=0)
            if is_log_scale(values):
                ax.set_xscale("log")
        else:
            # One position per distinct value, grouped by the value itself.
            position = {key(d): i for i, d in enumerate(labeller.values)}
            groups: list[list] = [[] for _ in labeller.values]
            for v, score in zip(values, scores):
                groups[position[key(v)]].append(score)
            points = [(position[key(values[i])], scores[i]) for i in drawn]
            jitter = [p + 0.15 * math.sin(7.3 * k) for k, (p, _) in enumerate(points)]
            ax.scatter(jitter, [s for _, s in points], s=size, color=OKABE_ITO[0], alpha=alpha, lw=0, zorder=2)
            ax.boxplot(groups, positions=range(len(groups)), widths=0.5, showfliers=False, zorder=3,
                       boxprops=dict(lw=1.4), whiskerprops=dict(lw=1.2),
                       medianprops=dict(color=OKABE_ITO[1], lw=2.2))
            ax.set_xticks(range(len(groups)))
            tilt = sum(len(t) + 3 for t in labeller.labels) > 40  # they would touch side by side
            ax.set_xticklabels(labeller.labels, rotation=25 if tilt else 0, ha="right" if tilt else "center",
                               fontsize=8)
            ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_title(name)
        ax.set_ylabel(f"best {metric}")
        _metric_scale(ax.yaxis, metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(swept):]:
        ax.axis("off")
    points = (f" (points: {len(drawn):,} of {len(trials):,} trials, chosen at random; boxes: all)"
              if len(drawn) < len(trials) else "")
    fig.suptitle(_wrap(f"{experiment.name}: effect of each parameter on {metric}{points}", width, 12))
    return fig


def parameter_effects(experiment: Experiment, path: Path, metric: str | None = None) -> Path | None:
    fig = draw_parameter_effects(experiment, metric)
    return _save(fig, path) if fig is not None else None


def importance(experiment: Experiment, metric: str | None = None) -> dict[str, float]:
    """Share of the metric's variance explained by each parameter alone
    (eta squared, a one-way ANOVA split).  Numeric parameters with many values
    are grouped into quantile bins first.  Interactions are ignored, so the
    shares need not sum to 1."""
    metric, mode = metric_mode(experiment, metric)
    trials = [t for t in experiment.ranked(metric, mode) if t.status != FAILED]
    scores = [t.best_value(metric, mode) for t in trials]
    if len(trials) < 2:
        return {}
    mean = sum(scores) / len(scores)
    total = sum((s - mean) ** 2 for s in scores)
    result = {}
    for name in experiment.swept:
        values = [t.config.get(name) for t in trials]
        if is_numeric(values) and len(set(values)) > 5:
            ranks = sorted(range(len(values)), key=lambda i: values[i])
            bins = [0] * len(values)
            for position, i in enumerate(ranks):
                bins[i] = position * 5 // len(values)  # five quantile bins
            keys = bins
        else:
            keys = [key(v) for v in values]
        groups: dict = {}
        for group, score in zip(keys, scores):
            groups.setdefault(group, []).append(score)
        between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
        result[name] = between / total if total > 0 else 0.0
    return dict(sorted(result.items(), key=lambda kv: kv[1], reverse=True))


def draw_parameter_importance(experiment: Experiment, metric: str | None = None):
    metric, _ = metric_mode(experiment, metric)
    shares = importance(experiment, metric)
    if not shares:
        return None
    n = len([t for t in experiment.trials if t.history and t.status != FAILED])
    width = 8.0
    fig, ax = _figure(width, max(3.2, 1.6 + 0.5 * len(shares)))
    names = list(shares)[::-1]
    ax.barh(names, [shares[k] for k in names], color=OKABE_ITO[0])
    for i, name in enumerate(names):
        ax.text(shares[name] + 0.01, i, f"{shares[name]:.0%}", va="center", fontsize=9)
    ax.set_xlim(0, 1.2)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel(f"share of {metric} variance explained (eta squared)")
    note = " (few trials: unreliable)" if n < 10 else ""
    ax.set_title(_wrap(f"{experiment.name}: parameter importance over {n} trials{note}", width - 1.0, 12))
    ax.grid(axis="x", alpha=0.3)
    return fig


def parameter_importance(experiment: Experiment, path: Path, metric: str | None = None) -> Path | None:
    fig = draw_parameter_importance(experiment, metric)
    return _save(fig, path) if fig is not None else None


def search_progress(experiment: Experiment, metric: str, mode: str):
    """Every reported value in the order the sweep got them: a list of
    (seconds since the sweep started or None, trial-epochs spent, trial, value, result row)."""
    rows = []
    for order, trial in enumerate(experiment.trials):
        for row in trial.history:
            value = row.get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                stamp = row.get("timestamp")
                rows.append((stamp if isinstance(stamp, (int, float)) else None, order,
                             row.get("training_iteration", 0), trial, value, row.get("time_total_s"), row))
    timed = all(r[0] is not None for r in rows)
    rows.sort(key=lambda r: (r[0] if timed else 0, r[1] if not timed else 0, r[2], r[1]))
    start = None
    if timed and rows:  # when the first trial started: its first result, less its own time
        start = min(r[0] - (r[5] if isinstance(r[5], (int, float)) else 0) for r in rows)
    return [(r[0] - start if timed else None, spent, r[3], r[4], r[6]) for spent, r in enumerate(rows, 1)]


def draw_best_so_far(experiment: Experiment, metric: str | None = None):
    """Each trial's best value as a point where the trial stood when it last
    reported, and the best value found so far as a line, against wall time
    and against trial-epochs (epochs trained, summed over trials)."""
    metric, mode = metric_mode(experiment, metric)
    progress = search_progress(experiment, metric, mode)
    if not progress:
        raise NothingToPlot(f"no trial has reported {metric}")
    width = 11.0
    fig, axes = _figure(width, 4.6, ncols=2, sharey=True)
    seconds = [p[0] for p in progress]
    minutes = seconds[0] is not None and max(seconds) > 180
    for ax, x_of, label in ((axes[0], lambda p: p[0] / 60 if minutes else p[0],
                             "wall time since the sweep started" + (" (min)" if minutes else " (s)")),
                            (axes[1], lambda p: p[1], "trial-epochs (epochs trained, all trials)")):
        if seconds[0] is None and ax is axes[0]:
            ax.text(0.5, 0.5, "no wall-clock times recorded", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlabel(label)
            continue
        xs, best, running = [], [], None
        last_of: dict = {}
        for p in progress:
            running = best_of((running, p[3]), mode)
            xs.append(x_of(p))
            best.append(running)
            last_of[p[2].trial_id] = (x_of(p), p[2])
        ax.plot(xs, best, drawstyle="steps-post", color=OKABE_ITO[0], lw=2, label=f"best {metric} so far")
        for state, colour, marker in ((FINISHED_STATE, OKABE_ITO[2], "o"), (STOPPED_STATE, "#888888", "o"),
                                      (FAILED_STATE, FAILED_COLOUR, "x")):
            points = [(x, trial.best_value(metric, mode)) for x, trial in last_of.values()
                      if experiment.state(trial) == state and trial.best_value(metric, mode) is not None]
            if points:
                ax.scatter(*zip(*points), s=22, color=colour, marker=marker, alpha=0.8, zorder=3,
                           label=f"a trial's best: {state}")
        others = [(x, t.best_value(metric, mode)) for x, t in last_of.values()
                  if experiment.state(t) not in (FINISHED_STATE, STOPPED_STATE, FAILED_STATE)]
        if others:
            ax.scatter(*zip(*others), s=22, color=OKABE_ITO[1], alpha=0.8, zorder=3, label="a trial's best: so far")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    _metric_scale(axes[0].yaxis, metric)
    # Below the axes: inside, it covered the last trials' points (a quickstart's
    # worst trial, the last to end, sat under it at the lower right).
    fig.legend(*axes[1].get_legend_handles_labels(), loc="outside lower center", ncols=4, framealpha=0.8)
    fig.suptitle(_wrap(f"{experiment.name}: best {metric} found so far ({len(experiment.trials)} trials, "
                       f"{len(progress)} trial-epochs; {selection_note(metric)})", width, 12))
    return fig


def best_so_far(experiment: Experiment, path: Path, metric: str | None = None) -> Path:
    return _save(draw_best_so_far(experiment, metric), path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path


@dataclass(frozen=True)
class Figure:
    title: str
    draw: Callable        # (experiment, path, metric[, top]) -> the path, or None when it has nothing to show
    highlights_top: bool  # takes `top`: the N best trials drawn apart


# Every figure, once, in the order a reader sees them (the report's): its key
# (the file's name without .png), its title and how it is drawn.
FIGURES = {
    "learning_curves": Figure("Learning curves", learning_curves, True),
    "parallel_coordinates": Figure("Parallel coordinates", parallel_coordinates, True),
    "parameter_effects": Figure("Effect of each parameter", parameter_effects, False),
    "parameter_importance": Figure("Parameter importance", parameter_importance, False),
    "best_so_far": Figure("Best found so far", best_so_far, False),
}
FIGURE_FILES = {name: f"{name}.png" for name in FIGURES}


def plot_all(experiment: Experiment, output_dir: Path, metric: str | None = None, top: int = 5) -> dict[str, Path]:
    """Every figure that the experiment can support; raises NothingToPlot when
    none (learning curves, the first, raise it)."""
    output_dir = Path(output_dir)
    written = {}
    for name, figure in FIGURES.items():
        extra = (top,) if figure.highlights_top else ()
        path = figure.draw(experiment, output_dir / FIGURE_FILES[name], metric, *extra)
        if path is not None:
            written[name] = path
    return written
