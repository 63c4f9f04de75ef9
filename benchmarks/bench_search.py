"""How much compute each search strategy needs to find a good model, on real
data: the recorded table (benchmarks/data/search_table.csv: 48 configurations
x 2 training seeds of small_cnn on CIFAR-10, every epoch) replayed through the
project's own sweep path (replay.py) for each strategy, many seeds each, and
population-based training read from real sweeps (it cannot be replayed: its
trials change values mid-run).

For each strategy: the best validation accuracy found against trial-epochs
spent (median and spread over seeds), the test accuracy at that choice, and
the goal check: does it reach the full grid's best validation accuracy
(within 0.5 points) with at most 25% of the grid's trial-epochs, median over
seeds?

    python benchmarks/bench_search.py replay --strategy grid     # 20 seeds, one Ray session
    python benchmarks/bench_search.py replay                     # every strategy, one after another
    python benchmarks/bench_search.py replay --strategy "random + ASHA"   # the hyperband file, --scheduler asha
    python benchmarks/bench_search.py replay --seeds 3 --table T.csv --out /tmp/x   # a quick try
    tune search benchmarks/spaces/search_pbt.yaml --name pbt-0 --set seed=0      # x3 seeds, real training
    python benchmarks/bench_search.py pbt ray_results/pbt-0 ray_results/pbt-1 ray_results/pbt-2
    python benchmarks/bench_search.py report

`replay` writes each strategy's curves to benchmarks/results/curves/, `pbt`
the real PBT sweeps' curves beside them; `report` reads them all, prints
BENCHMARKS.md's table and writes
benchmarks/results/search.json and the anytime plot
(benchmarks/results/search_anytime.png).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT
from replay import Table, anytime, best_at, repeats, replay, spent_to_reach, steps

SPACES = ROOT / "benchmarks" / "spaces"
STRATEGIES = {  # label -> (sweep file, --scheduler); the grid first: the others are measured against it
    "grid": (SPACES / "search_grid.yaml", None),
    "random": (SPACES / "search_random.yaml", None),
    "random + hyperband": (SPACES / "search_random_hyperband.yaml", None),  # wandb's rule
    "random + ASHA": (SPACES / "search_random_hyperband.yaml", "asha"),  # Ray's ASHA at the same cuts
    "bayes (TPE) + hyperband": (SPACES / "search_bayes_hyperband.yaml", None),
}
TOLERANCE = 0.005     # within 0.5 points of the grid's best
BUDGET_SHARE = 0.25   # with at most a quarter of the grid's trial-epochs
OUT = ROOT / "benchmarks" / "results"


def record_pbt(experiments: list[Path], out: Path) -> None:
    """Real PBT sweeps (of spaces/search_pbt.yaml) as anytime curves, in the
    order their results arrived, with what PBT did in each, into out/curves/."""
    from tune_pipeline.experiment import load_experiment
    from tune_pipeline.metrics import best_epoch
    from tune_pipeline.pbt import describe_schedule, schedule_of
    from tune_pipeline.plots import search_progress

    curves, runs = [], []
    for path in experiments:
        exp = load_experiment(path)
        progress = search_progress(exp, "val_accuracy", "max")
        curves.append(steps(anytime([{"val_accuracy": value, "test_accuracy": row.get("test_accuracy")}
                                     for *_, value, row in progress])))
        best = exp.best_trial()
        row = best_epoch(best.history, "val_accuracy", "max")
        policy = path / "pbt_global.txt"
        stamps = [r.get("timestamp") for t in exp.trials for r in t.history if r.get("timestamp")]
        runs.append({"experiment": path.name, "trial_epochs": len(progress), "trials": len(exp.trials),
                     "exploits": len(policy.read_text().splitlines()) if policy.exists() else 0,
                     "wall_seconds": (max(stamps) - min(stamps)) if stamps else None,
                     "best_val": row["val_accuracy"], "test_at_choice": row["test_accuracy"],
                     "winner": {k: row["config"].get(k) for k in exp.swept},
                     "winner_schedule": describe_schedule(schedule_of(row))})
        print(f"{path.name}: best val {100 * row['val_accuracy']:.2f}% after {len(progress)} trial-epochs, "
              f"{runs[-1]['exploits']} exploits; {runs[-1]['winner_schedule'] or 'winner never changed'}")
    (out / "curves").mkdir(parents=True, exist_ok=True)
    (out / "curves" / "search_pbt.json").write_text(json.dumps(
        {"strategy": "pbt", "space": "benchmarks/spaces/search_pbt.yaml", "runs": runs, "curves": curves},
        default=str) + "\n")


def quantiles(values: list[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile); inf counts as never."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0], ordered[0], ordered[0]
    q = statistics.quantiles(ordered, n=4, method="inclusive") if all(map(math.isfinite, ordered)) else None
    if q is None:  # some never reached: order statistics, inf allowed
        pick = lambda p: ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]
        return pick(0.25), pick(0.5), pick(0.75)
    return q[0], q[1], q[2]


def summarize(curves: dict[str, list], grid_best: list[float], grid_spent: float,
              repeated: dict[str, list] | None = None) -> list[dict]:
    """One row per strategy: what BENCHMARKS.md's table shows; `repeated`:
    each replay's trials, configurations and trial-epochs on repeats."""
    budget = BUDGET_SHARE * grid_spent
    rows = []
    for label, runs in curves.items():
        seeds = range(len(runs))
        # Each replay seed against the grid of the same seed (same recorded curves); PBT (real
        # sweeps) against the grid's median.
        target = [(grid_best[i] if i < len(grid_best) and label != "pbt" else statistics.median(grid_best))
                  - TOLERANCE for i in seeds]
        reach = [spent_to_reach(runs[i], target[i]) for i in seeds]
        final = [runs[i][-1][1] for i in seeds]
        tests = [runs[i][-1][2] for i in seeds]
        at_budget = [best_at(runs[i], budget)[0] for i in seeds]
        rows.append({
            "strategy": label, "seeds": len(runs),
            "trial_epochs": quantiles([runs[i][-1][0] for i in seeds]),
            "best_val": quantiles(final), "test_at_choice": quantiles([t for t in tests if t is not None] or [math.nan]),
            "best_val_at_25pct": quantiles(at_budget),
            "trial_epochs_to_grid_best": quantiles(reach),
            "reached_share": sum(math.isfinite(r) for r in reach) / len(reach),
            "goal": statistics.median(reach) <= budget,
            "configurations": quantiles([r["configurations"] for r in repeated[label]])
            if (repeated or {}).get(label) else None,
            "repeat_share": quantiles([r["repeat_trial_epochs"] / c[-1][0] for r, c in zip(repeated[label], runs)])
            if (repeated or {}).get(label) else None,
        })
    return rows


def _pct(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _spent(value: float) -> str:
    return "never" if not math.isfinite(value) else f"{value:.0f}"


def markdown(rows: list[dict], grid_spent: float) -> str:
    lines = ["| strategy | seeds | trial-epochs spent | best val acc % | test acc at that choice % "
             f"| best val acc % at {BUDGET_SHARE:.0%} of the grid ({BUDGET_SHARE * grid_spent:.0f}) "
             "| trial-epochs to the grid's best - 0.5 pt | goal "
             "| configurations tried | share of trial-epochs on repeats |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = lambda key, f: f"{f(r[key][1])} ({f(r[key][0])}-{f(r[key][2])})"
        lines.append(f"| {r['strategy']} | {r['seeds']} | {q('trial_epochs', _spent)} | {q('best_val', _pct)} "
                     f"| {q('test_at_choice', _pct)} | {q('best_val_at_25pct', _pct)} "
                     f"| {q('trial_epochs_to_grid_best', _spent)} ({r['reached_share']:.0%} of seeds reach it) "
                     f"| {'yes' if r['goal'] else 'no'} "
                     f"| {q('configurations', _spent) if r['configurations'] else '-'} "
                     f"| {q('repeat_share', lambda v: f'{v:.0%}') if r['repeat_share'] else '-'} |")
    return "\n".join(lines) + "\n\nmedian (25th-75th percentile) over seeds\n"


def plot(curves: dict[str, list], grid_best: list[float], grid_spent: float, path: Path) -> None:
    """Median best-so-far per strategy against trial-epochs, with the 25-75% band."""
    sys.path.insert(0, str(ROOT))
    import matplotlib.ticker

    from tune_pipeline.plots import OKABE_ITO, _figure, _metric_scale, _save

    fig, ax = _figure(10.0, 5.6)
    longest = int(max(c[-1][0] for runs in curves.values() for c in runs))
    xs = list(range(1, longest + 1))
    for colour, (label, runs) in zip(OKABE_ITO, curves.items()):
        def at(curve, x):
            return best_at(curve, x)[0] if x >= curve[0][0] else math.nan
        ends = sorted(c[-1][0] for c in runs)
        reach = ends[len(ends) // 2]  # draw up to the median run's end
        grid = [x for x in xs if x <= reach]
        values = [[at(c, x) for c in runs] for x in grid]
        finite = [[v for v in vs if not math.isnan(v)] for vs in values]
        med = [statistics.median(v) if v else math.nan for v in finite]
        lo = [quantiles(v)[0] if v else math.nan for v in finite]
        hi = [quantiles(v)[2] if v else math.nan for v in finite]
        ax.plot(grid, med, color=colour, lw=2, label=f"{label} ({len(runs)} seeds)")
        ax.fill_between(grid, lo, hi, color=colour, alpha=0.15, lw=0)
    best = statistics.median(grid_best)
    ax.axhline(best - TOLERANCE, color="#444444", ls="--", lw=1,
               label=f"the grid's best - 0.5 pt ({100 * (best - TOLERANCE):.2f}%)")
    ax.axvline(BUDGET_SHARE * grid_spent, color="#444444", ls=":", lw=1,
               label=f"{BUDGET_SHARE:.0%} of the grid's trial-epochs ({BUDGET_SHARE * grid_spent:.0f})")
    # Log x: the strategies part in their first hundred trial-epochs; linear would squeeze that
    # into a fifth of the width and spend the rest on flat lines.
    ax.set_xscale("log")
    ax.set_xlim(2, longest * 1.1)
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([2, 5, 10, 20, 50, 100, 200, 400]))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("trial-epochs spent (epochs trained, summed over trials; log scale)")
    ax.set_ylabel("best validation accuracy found so far")
    _metric_scale(ax.yaxis, "val_accuracy")
    ax.set_ylim(best - 0.07, best + 0.015)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", framealpha=0.9)
    ax.set_title("small_cnn on CIFAR-10 (8,000 images, 9 epochs): best found against compute, "
                 "median and 25-75% over seeds", fontsize=11)
    _save(fig, path)


def curves_file(label: str) -> str:
    """Where a strategy's replays are kept: its sweep file's name, and the scheduler flag when given."""
    space, scheduler = STRATEGIES[label]
    return f"{space.stem}{'_' + scheduler if scheduler else ''}.json"


def replay_strategy(label: str, seeds: int, table_path: Path, out: Path) -> None:
    """`seeds` replays of one strategy, in one Ray session, into out/curves/."""
    import os

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no console box per Tuner, as sweep.py keeps it
    import ray

    table = Table.read(table_path)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=True,
             logging_level="ERROR")
    curves, runs, started = [], [], time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as storage:
            space, scheduler = STRATEGIES[label]
            for seed in range(seeds):
                t = time.perf_counter()
                results = replay(space, table, seed, Path(storage), f"{space.stem}-{seed}", scheduler=scheduler)
                curves.append(steps(anytime(results)))
                runs.append(repeats(results, table.axes))
                print(f"{label} seed {seed}: {len(results)} trial-epochs, best val "
                      f"{100 * curves[-1][-1][1]:.2f}%, {runs[-1]['trials']} trials of "
                      f"{runs[-1]['configurations']} configurations "
                      f"({runs[-1]['repeat_trial_epochs']} trial-epochs on repeats) "
                      f"({time.perf_counter() - t:.1f} s)", flush=True)
    finally:
        ray.shutdown()
    (out / "curves").mkdir(parents=True, exist_ok=True)
    space, scheduler = STRATEGIES[label]
    (out / "curves" / curves_file(label)).write_text(json.dumps(
        {"strategy": label, "space": str(space.relative_to(ROOT)), "scheduler": scheduler,
         "table": _shown(table_path),
         "seeds": seeds, "seconds": time.perf_counter() - started, "runs": runs, "curves": curves}) + "\n")


def _shown(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def report(out: Path) -> None:
    """Every strategy's curves (replayed, and PBT's real sweeps): the table and the plot."""
    curves, repeated = {}, {}
    for label, name in [*((label, curves_file(label)) for label in STRATEGIES), ("pbt", "search_pbt.json")]:
        path = out / "curves" / name
        if path.exists():
            saved = json.loads(path.read_text())
            curves[label] = saved["curves"]
            if label != "pbt":  # PBT's runs say what PBT did; every PBT trial is its own
                repeated[label] = saved.get("runs")
    if "grid" not in curves:
        raise SystemExit(f"no grid replay in {out / 'curves'}: run `bench_search.py replay --strategy grid` first")
    grid_best = [c[-1][1] for c in curves["grid"]]
    grid_spent = statistics.median(c[-1][0] for c in curves["grid"])
    rows = summarize(curves, grid_best, grid_spent, repeated)
    (out / "search.json").write_text(json.dumps({"grid_trial_epochs": grid_spent, "rows": rows},
                                                indent=1, default=str) + "\n")
    plot(curves, grid_best, grid_spent, out / "search_anytime.png")
    print(markdown(rows, grid_spent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("replay", help="replay one strategy (or all) for many seeds")
    one.add_argument("--strategy", choices=list(STRATEGIES), action="append",
                     help="repeatable; default: every strategy")
    one.add_argument("--seeds", type=int, default=20)
    one.add_argument("--table", type=Path, default=ROOT / "benchmarks" / "data" / "search_table.csv")
    one.add_argument("--out", type=Path, default=OUT)
    pbt = commands.add_parser("pbt", help="read real PBT sweeps of spaces/search_pbt.yaml")
    pbt.add_argument("experiments", type=Path, nargs="+")
    pbt.add_argument("--out", type=Path, default=OUT)
    summary = commands.add_parser("report", help="the table and the anytime plot from the curves")
    summary.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.command == "replay":
        for label in args.strategy or STRATEGIES:
            replay_strategy(label, args.seeds, args.table, args.out)
    elif args.command == "pbt":
        record_pbt(args.experiments, args.out)
    else:
        report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
