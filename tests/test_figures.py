"""The figures' contents, read from their artists (not pixels), on
experiments written to disk with 1, 4, 40 and 144 trials, and on random
searches of 1, 40 and 5,000 trials (in memory)."""

import re

import pytest

from tune_pipeline.experiment import load_experiment
from tune_pipeline.labels import Labeller, key
from tune_pipeline.plots import (FEW_VALUES, MAX_POINTS, MANY_CURVES, draw_best_so_far, draw_learning_curves,
                                 draw_parallel_coordinates, draw_parameter_effects, draw_parameter_importance,
                                 line_alpha)

from fake_experiment import QUICKSTART_GRID, SCRIPTS, grid_of, make_experiment, random_search

GRIDS = {
    1: {"runtime_transform_script": SCRIPTS[:1], "learning_rate": [0.1]},
    4: QUICKSTART_GRID,
    40: {"runtime_transform_script": SCRIPTS, "learning_rate": [round(1e-3 * 1.4 ** i, 6) for i in range(20)]},
    144: grid_of(144),
}
DRAW = [draw_learning_curves, draw_parallel_coordinates, draw_parameter_effects, draw_parameter_importance,
        draw_best_so_far]


SEARCHES = [1, 40, 5000]


@pytest.fixture(scope="module", params=[*sorted(GRIDS), *(f"random-{n}" for n in SEARCHES)])
def experiment(request, tmp_path_factory):
    if str(request.param).startswith("random-"):
        return searches(int(request.param.split("-")[1]))
    statuses = {1: ("ERROR", 1), 2: ("TERMINATED", 1)} if request.param > 1 else None
    path = make_experiment(tmp_path_factory.mktemp("exp"), GRIDS[request.param], statuses=statuses,
                           name=f"grid-of-{request.param}-trials-with-a-long-experiment-name")
    return load_experiment(path)


_SEARCHES: dict = {}


def searches(count):
    """asha.yaml's six parameters, randomly searched, made once per module."""
    if count not in _SEARCHES:
        _SEARCHES[count] = random_search(count, name=f"random-search-of-{count}-trials")
    return _SEARCHES[count]


def close(fig):
    import matplotlib.pyplot as plt
    plt.close(fig)


@pytest.mark.parametrize("draw", DRAW, ids=lambda d: d.__name__)
def test_no_text_lies_outside_the_figure(experiment, draw):
    from matplotlib.text import Text

    fig = draw(experiment)
    if fig is None:
        assert draw is draw_parameter_importance and len(experiment.trials) == 1
        return
    fig.canvas.draw()  # runs the constrained layout
    renderer = fig.canvas.get_renderer()
    box = fig.bbox

    def inside(extent, what):
        assert (extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1 and extent.y0 >= box.y0 - 1
                and extent.y1 <= box.y1 + 1), f"{draw.__name__}: {what} at {extent} outside {box}"

    # Tick labels exist for ticks outside the view too; each axes' tight box holds the drawn ones.
    tick_labels = {id(t) for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()}
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in tick_labels]
    assert texts
    for text in texts:
        inside(text.get_window_extent(renderer), repr(text.get_text()))
    for ax in fig.axes:
        inside(ax.get_tightbbox(renderer), f"axes {ax.get_title()!r} with its tick labels")
    close(fig)


def trial_lines(ax):
    """Each trial's line of the parallel coordinates: the segments of its LineCollection."""
    from matplotlib.collections import LineCollection

    (collection,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    return collection


def test_parallel_coordinates_draws_one_position_per_value(experiment):
    fig = draw_parallel_coordinates(experiment)
    ax = fig.axes[0]
    trials = experiment.ranked()
    segments = trial_lines(ax).get_segments()
    assert len(segments) == len(trials)
    for x, name in enumerate(experiment.swept):
        values = [t.config.get(name) for t in trials]
        labeller = Labeller(values)
        ys = {round(segment[x][1], 9) for segment in segments}
        assert len(ys) == len({key(v) for v in values}), name  # distinct values, not labels, drawn
        ticks = sorted((t.get_position()[1], t.get_text()) for t in ax.texts if abs(t.get_position()[0] - x - 0.03) < 1e-9)
        if len(labeller.values) <= FEW_VALUES or not all(isinstance(v, (int, float)) for v in values):
            assert sorted(t for _, t in ticks) == sorted(labeller.labels)  # every value ticked, nothing between
            assert {round(y, 9) for y, _ in ticks} == ys
    close(fig)


def test_parameter_effects_has_one_box_per_value_labelled_apart(experiment):
    fig = draw_parameter_effects(experiment)
    for ax, name in zip(fig.axes, experiment.swept):
        values = [t.config.get(name) for t in experiment.ranked()]
        labeller = Labeller(values)
        if len(labeller.values) > FEW_VALUES:
            continue  # a scatter over a numeric axis
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == labeller.labels and len(set(labels)) == len(labels)
        assert len(ax.get_xticks()) == len({key(v) for v in values})
    if "runtime_transform_script" in experiment.swept and len(experiment.trials) > 1:
        ax = fig.axes[experiment.swept.index("runtime_transform_script")]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["advanced", "basic"]
    close(fig)


def test_learning_curve_legend_entries_are_distinct(experiment):
    fig = draw_learning_curves(experiment)
    entries = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(entries) == len(set(entries))
    if len(experiment.trials) == 4:
        assert any("advanced" in e for e in entries) and any("basic" in e for e in entries)
    close(fig)


# ---------------------------------------------------------------- at any size: 1, 40 and 5,000 trials

@pytest.mark.parametrize("count", SEARCHES)
def test_learning_curves_draw_the_many_as_a_band_and_the_top_on_top_with_a_legend_outside(count):
    from matplotlib.collections import PolyCollection

    experiment = searches(count)
    fig = draw_learning_curves(experiment, top=5)
    ax = fig.axes[0]
    others = len(experiment.trials) - min(5, len(experiment.trials))
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    top = [line for line in ax.lines if line.get_linewidth() > 2]
    assert len(top) == min(5, count)
    if others > MANY_CURVES:  # 4,995 curves as two bands and a median, not 4,995 lines
        assert len(bands) == 2 and len(ax.lines) == len(top) + 1 + len([l for l in top if l.get_marker() == "x"])
        assert all(b.get_alpha() <= 0.3 for b in bands)
        assert all(line.get_zorder() > max(b.get_zorder() for b in bands) for line in top)
    else:
        thin = [line for line in ax.lines if line not in top and line.get_marker() != "x"]
        assert len(thin) == others and all(line.get_alpha() <= 0.5 for line in thin)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    plot = ax.get_window_extent(renderer)
    assert legend.y1 <= plot.y0  # below the curves, never over them
    # Values rounded as the labels of the highlighted trials are: a few digits, not 8-10.
    best = experiment.ranked()[:5]
    numbers = [n for t in fig.legends[0].get_texts() if re.match(r"^\S+: ", t.get_text())
               for n in re.findall(r"(?<![\w.])\d[\d.e-]*", t.get_text().split(": ", 1)[1])]
    learning_rates = Labeller(t.config["learning_rate"] for t in best)
    digits = [re.sub(r"e.*$", "", n).replace(".", "").lstrip("0") for n in numbers]
    assert numbers and all(len(d) <= 3 for d in digits), numbers
    if count > 1:
        assert all(learning_rates(t.config["learning_rate"]) in " ".join(x.get_text() for x in fig.legends[0].get_texts())
                   for t in best)
    close(fig)


@pytest.mark.parametrize("count", SEARCHES)
def test_parallel_coordinates_fade_with_the_number_of_trials(count):
    experiment = searches(count)
    fig = draw_parallel_coordinates(experiment, top=5)
    ax = fig.axes[0]
    alphas = {round(rgba[3], 6) for rgba in trial_lines(ax).get_colors()}
    assert alphas == {round(line_alpha(count), 6)}
    assert line_alpha(5000) < 0.05 < line_alpha(40) <= 0.9 and line_alpha(1) == 0.9
    opaque = [line for line in ax.lines if line.get_alpha() == 1.0]
    assert len(opaque) == (5 if line_alpha(count) < 0.9 else 0)  # the best, on top
    if opaque:
        assert all(line.get_zorder() > trial_lines(ax).get_zorder() for line in opaque)
        assert opaque[-1].get_ydata()[-1] == 1.0  # the last drawn is the best: the top of the metric's axis
    close(fig)


@pytest.mark.parametrize("count", SEARCHES)
def test_parameter_effects_thin_the_points_and_keep_the_boxes_in_front(count):
    from matplotlib.collections import PathCollection

    experiment = searches(count)
    fig = draw_parameter_effects(experiment)
    for ax, name in zip(fig.axes, experiment.swept):
        (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(points.get_offsets()) == min(count, MAX_POINTS)
        boxes = [line for line in ax.lines]
        if boxes:  # a categorical (or few-valued) parameter: boxes over the points
            assert all(line.get_zorder() > points.get_zorder() for line in boxes), name
    title = fig._suptitle.get_text()
    assert ("300 of 5,000 trials" in title) == (count == 5000)
    close(fig)
