"""Pictures of an experiment, drawn from what is on disk (matplotlib, headless).

Four figures: learning curves, parallel coordinates of the swept parameters,
each parameter's effect on the metric, and parameter importance.  Colours are
the Okabe-Ito palette and cividis, both readable with colour-blindness.
"""

from __future__ import annotations

import math
from pathlib import Path

from tune_pipeline.experiment import FAILED, FINISHED, Experiment, Trial
from tune_pipeline.metrics import selection_note

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
FAILED_COLOUR = "#D55E00"
DPI = 110
FIGURE_FILES = {
    "learning_curves": "learning_curves.png",
    "parallel_coordinates": "parallel_coordinates.png",
    "parameter_effects": "parameter_effects.png",
    "parameter_importance": "parameter_importance.png",
}


class NothingToPlot(Exception):
    """No trial has a result yet (all failed early, or none started)."""


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # no display needed, ever
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 10, "axes.titlesize": 12, "axes.labelsize": 10,
                         "legend.fontsize": 8, "figure.autolayout": False})
    return plt


def short(value, width: int = 24) -> str:
    """A label: a script path by its file stem, floats to 3 digits, long text cut."""
    if isinstance(value, str) and "/" in value:
        value = value.rsplit("/", 1)[-1]
        value = value[:-3] if value.endswith(".py") else value
    if isinstance(value, float):
        return f"{value:.3g}"
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


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


def trial_kind(trial: Trial, planned_epochs: int) -> str:
    if trial.status == FAILED:
        return "failed"
    if trial.status == FINISHED and trial.epochs < (trial.config.get("epochs") or planned_epochs):
        return "stopped early"
    if trial.status == FINISHED:
        return "finished"
    return trial.status.lower()


def learning_curves(experiment: Experiment, path: Path, metric: str | None = None, top: int = 5) -> Path:
    plt = _pyplot()
    metric, mode = metric_mode(experiment, metric)
    ranked = experiment.ranked(metric, mode)
    if not ranked:
        raise NothingToPlot(f"no trial has reported {metric}")
    best = ranked[:top]
    planned = max_epochs(experiment)
    fig, ax = plt.subplots(figsize=(9, 5.5))
    styles = {"stopped early": dict(ls="--", alpha=0.35, lw=1), "failed": dict(ls=":", alpha=0.6, lw=1.2,
              color=FAILED_COLOUR), "finished": dict(alpha=0.25, lw=1)}
    seen = set()
    for trial in experiment.trials:
        xs = [h.get("epoch") for h in trial.history if h.get(metric) is not None]
        ys = [h[metric] for h in trial.history if h.get(metric) is not None]
        if not xs or trial in best:
            continue
        kind = trial_kind(trial, planned)
        style = {"color": "#888888", **styles.get(kind, dict(alpha=0.3, lw=1))}
        ax.plot(xs, ys, label=None if kind in seen else f"{kind} trials", **style)
        if kind == "failed":
            ax.plot(xs[-1:], ys[-1:], "x", color=FAILED_COLOUR, ms=7)
        seen.add(kind)
    for colour, trial in zip(OKABE_ITO, best):
        xs = [h.get("epoch") for h in trial.history if h.get(metric) is not None]
        ys = [h[metric] for h in trial.history if h.get(metric) is not None]
        swept = ", ".join(f"{k}={short(trial.config.get(k), 18)}" for k in experiment.swept[:4])
        ls = "--" if trial_kind(trial, planned) == "stopped early" else "-"
        ax.plot(xs, ys, color=colour, lw=2.2, ls=ls, marker="o", ms=3,
                label=f"{trial.trial_id}: {swept}" if swept else trial.trial_id)
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{experiment.name}: {metric} per epoch (top {len(best)} of {len(ranked)} highlighted, "
                 f"{selection_note(metric)})")
    ax.grid(alpha=0.3)
    if planned:
        ax.set_xlim(0.8, max(planned, 1) + 0.2)
    ax.legend(loc="best", frameon=False)
    return _save(fig, path)


def _axis_positions(values: list) -> tuple[list[float], list[float], list[str], bool]:
    """Values mapped to [0, 1] plus tick positions and labels for one axis."""
    if is_numeric(values):
        log = is_log_scale(values)
        tx = [math.log10(v) for v in values] if log else [float(v) for v in values]
        lo, hi = min(tx), max(tx)
        span = (hi - lo) or 1.0
        pos = [(v - lo) / span for v in tx]
        ticks = [0.0, 0.5, 1.0]
        labels = [short(10 ** (lo + t * span) if log else lo + t * span) for t in ticks]
        return pos, ticks, labels, log
    categories = sorted({short(v, 18) for v in values}, key=str)
    step = 1.0 / max(len(categories) - 1, 1)
    index = {c: i * step for i, c in enumerate(categories)}
    if len(categories) == 1:
        index = {categories[0]: 0.5}
    return [index[short(v, 18)] for v in values], list(index.values()), categories, False


def parallel_coordinates(experiment: Experiment, path: Path, metric: str | None = None) -> Path | None:
    plt = _pyplot()
    from matplotlib import cm, colors

    metric, mode = metric_mode(experiment, metric)
    trials = experiment.ranked(metric, mode)
    swept = experiment.swept
    if not trials:
        raise NothingToPlot(f"no trial has reported {metric}")
    if not swept:
        return None
    scores = [t.best_value(metric, mode) for t in trials]
    norm = colors.Normalize(min(scores), max(scores) if max(scores) > min(scores) else min(scores) + 1e-9)
    cmap = cm.get_cmap("cividis") if hasattr(cm, "get_cmap") else plt.colormaps["cividis"]
    columns = swept + [metric]
    axes_data = [_axis_positions([t.config.get(k) for t in trials]) for k in swept]
    axes_data.append(_axis_positions(scores))
    # 2.6 inches per axis leaves room for an 18-character label beside each.
    fig, ax = plt.subplots(figsize=(max(8, 2.6 * len(columns)), 5.5))
    # Worst first, so the best lines are drawn on top.
    order = sorted(range(len(trials)), key=lambda i: scores[i], reverse=(mode == "min"))
    alpha = 0.9 if len(trials) <= 20 else 0.5
    for i in order:
        ax.plot(range(len(columns)), [a[0][i] for a in axes_data], color=cmap(norm(scores[i])),
                lw=1.4, alpha=alpha)
    for x, (name, (_, ticks, labels, log)) in enumerate(zip(columns, axes_data)):
        ax.axvline(x, color="#444444", lw=0.8)
        for t, label in zip(ticks, labels):
            ax.text(x + 0.03, t, label, fontsize=8, va="center", ha="left",
                    bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.7))
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([f"{c}\n(log)" if a[3] else c for c, a in zip(columns, axes_data)], fontsize=9)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlim(-0.2, len(columns) - 0.4)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=f"best {metric}", pad=0.02)
    ax.set_title(f"{experiment.name}: swept parameters, coloured by best {metric} ({len(trials)} trials)")
    return _save(fig, path)


def parameter_effects(experiment: Experiment, path: Path, metric: str | None = None) -> Path | None:
    plt = _pyplot()
    metric, mode = metric_mode(experiment, metric)
    trials = experiment.ranked(metric, mode)
    if not trials:
        raise NothingToPlot(f"no trial has reported {metric}")
    swept = experiment.swept
    if not swept:
        return None
    cols = min(3, len(swept))
    rows = math.ceil(len(swept) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    scores = [t.best_value(metric, mode) for t in trials]
    for ax, name in zip(axes.flat, swept):
        values = [t.config.get(name) for t in trials]
        if is_numeric(values) and len(set(values)) > 6:
            ax.scatter(values, scores, s=18, color=OKABE_ITO[0], alpha=0.7)
            if is_log_scale(values):
                ax.set_xscale("log")
        else:
            distinct = sorted(set(values)) if is_numeric(values) else sorted(set(values), key=str)
            categories = list(dict.fromkeys(short(v, 18) for v in distinct))
            groups = [[s for v, s in zip(values, scores) if short(v, 18) == c] for c in categories]
            ax.boxplot(groups, positions=range(len(categories)), widths=0.5, showfliers=False,
                       medianprops=dict(color=OKABE_ITO[1], lw=2))
            for i, group in enumerate(groups):  # the points themselves, jittered
                jitter = [i + 0.15 * math.sin(7.3 * k) for k in range(len(group))]
                ax.scatter(jitter, group, s=12, color=OKABE_ITO[0], alpha=0.6, zorder=3)
            ax.set_xticks(range(len(categories)))
            ax.set_xticklabels(categories, rotation=20 if len(categories) > 3 else 0, ha="right"
                               if len(categories) > 3 else "center", fontsize=8)
        ax.set_title(name)
        ax.set_ylabel(f"best {metric}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(swept):]:
        ax.axis("off")
    fig.suptitle(f"{experiment.name}: effect of each parameter on {metric}")
    return _save(fig, path)


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
            keys = [short(v) for v in values]
        groups: dict = {}
        for key, score in zip(keys, scores):
            groups.setdefault(key, []).append(score)
        between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
        result[name] = between / total if total > 0 else 0.0
    return dict(sorted(result.items(), key=lambda kv: kv[1], reverse=True))


def parameter_importance(experiment: Experiment, path: Path, metric: str | None = None) -> Path | None:
    plt = _pyplot()
    metric, _ = metric_mode(experiment, metric)
    shares = importance(experiment, metric)
    if not shares:
        return None
    n = len([t for t in experiment.trials if t.history and t.status != FAILED])
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 1.2 + 0.5 * len(shares))))
    names = list(shares)[::-1]
    ax.barh(names, [shares[k] for k in names], color=OKABE_ITO[0])
    for i, name in enumerate(names):
        ax.text(shares[name] + 0.01, i, f"{shares[name]:.0%}", va="center", fontsize=9)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(f"share of {metric} variance explained (eta squared)")
    note = "  (few trials: unreliable)" if n < 10 else ""
    ax.set_title(f"{experiment.name}: parameter importance over {n} trials{note}")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path


def plot_all(experiment: Experiment, output_dir: Path, metric: str | None = None, top: int = 5) -> dict[str, Path]:
    """Every figure that the experiment can support; raises NothingToPlot when none."""
    output_dir = Path(output_dir)
    written = {"learning_curves": learning_curves(experiment, output_dir / FIGURE_FILES["learning_curves"],
                                                  metric, top)}
    for key, draw in (("parallel_coordinates", parallel_coordinates), ("parameter_effects", parameter_effects),
                      ("parameter_importance", parameter_importance)):
        path = draw(experiment, output_dir / FIGURE_FILES[key], metric)
        if path is not None:
            written[key] = path
    return written
