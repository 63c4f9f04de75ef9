"""`tune plot`'s best-so-far figure: the running best as a line and each
trial's best as a point, against wall time and against trial-epochs."""

import json

from tune_pipeline.experiment import load_experiment
from tune_pipeline.plots import draw_best_so_far, search_progress

from fake_experiment import QUICKSTART_GRID, make_experiment


def timed_experiment(tmp_path):
    """Four trials, one stopped early, results stamped as a sweep of two at a time stamps them."""
    path = make_experiment(tmp_path, QUICKSTART_GRID, statuses={2: ("TERMINATED", 1)})
    for index, trial_dir in enumerate(sorted(path.glob("trial_*"))):
        rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        for row in rows:
            row["time_total_s"] = 10.0 * row["epoch"]
            row["timestamp"] = 1_000 + 30 * (index // 2) + int(row["time_total_s"])
        (trial_dir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_experiment(path)


def test_the_running_best_never_falls_and_no_trial_lies_above_it(tmp_path):
    experiment = timed_experiment(tmp_path)
    progress = search_progress(experiment, "test_accuracy", "max")
    assert [p[1] for p in progress] == list(range(1, 3 * 3 + 1 + 1))  # trial-epochs: 3 + 3 + 1 + 3
    assert progress[0][0] == 10  # its first epoch ended 10 s after the first trial started
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)

    fig = draw_best_so_far(experiment)
    wall, spent = fig.axes[:2]
    assert "wall time" in wall.get_xlabel() and "trial-epochs" in spent.get_xlabel()
    for ax in (wall, spent):
        line = ax.get_lines()[0]
        ys = list(line.get_ydata())
        assert ys == sorted(ys)  # a running best
        points = [tuple(p) for collection in ax.collections for p in collection.get_offsets()]
        assert len(points) == len(experiment.trials)  # one point per trial with a result
        for x, y in points:
            below = [b for lx, b in zip(line.get_xdata(), ys) if lx <= x]
            assert y <= below[-1] + 1e-12
    assert max(spent.get_lines()[0].get_xdata()) == 10
    fig.canvas.draw()  # the legend names the line and the points, and covers neither panel
    (legend,) = fig.legends
    assert {t.get_text() for t in legend.get_texts()} >= {"best test_accuracy so far"}
    assert not any(legend.get_window_extent().overlaps(ax.get_window_extent()) for ax in (wall, spent))


def test_without_wall_clock_times_the_trial_epochs_panel_still_draws(tmp_path):
    experiment = load_experiment(make_experiment(tmp_path, QUICKSTART_GRID))
    for trial in experiment.trials:  # results written without Ray's clock
        for row in trial.history:
            row.pop("timestamp", None)
    fig = draw_best_so_far(experiment)
    assert "no wall-clock times recorded" in [t.get_text() for t in fig.axes[0].texts]
    assert len(fig.axes[1].get_lines()[0].get_xdata()) == 4 * 3
