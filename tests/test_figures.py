"""The figures' contents, read from their artists (not pixels), on
experiments written to disk with 1, 4, 40 and 144 trials."""

import pytest

from tune_pipeline.experiment import load_experiment
from tune_pipeline.labels import Labeller, key
from tune_pipeline.plots import (FEW_VALUES, draw_best_so_far, draw_learning_curves, draw_parallel_coordinates,
                                 draw_parameter_effects, draw_parameter_importance)

from fake_experiment import QUICKSTART_GRID, SCRIPTS, grid_of, make_experiment

GRIDS = {
    1: {"runtime_transform_script": SCRIPTS[:1], "learning_rate": [0.1]},
    4: QUICKSTART_GRID,
    40: {"runtime_transform_script": SCRIPTS, "learning_rate": [round(1e-3 * 1.4 ** i, 6) for i in range(20)]},
    144: grid_of(144),
}
DRAW = [draw_learning_curves, draw_parallel_coordinates, draw_parameter_effects, draw_parameter_importance,
        draw_best_so_far]


@pytest.fixture(scope="module", params=sorted(GRIDS))
def experiment(request, tmp_path_factory):
    statuses = {1: ("ERROR", 1), 2: ("TERMINATED", 1)} if request.param > 1 else None
    path = make_experiment(tmp_path_factory.mktemp("exp"), GRIDS[request.param], statuses=statuses,
                           name=f"grid-of-{request.param}-trials-with-a-long-experiment-name")
    return load_experiment(path)


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


def test_parallel_coordinates_draws_one_position_per_value(experiment):
    fig = draw_parallel_coordinates(experiment)
    ax = fig.axes[0]
    trials = experiment.ranked()
    for x, name in enumerate(experiment.swept):
        values = [t.config.get(name) for t in trials]
        labeller = Labeller(values)
        ys = {round(line.get_ydata()[x], 9) for line in ax.lines if len(line.get_xdata()) == len(experiment.swept) + 1}
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
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["advanced", "basic"]
    close(fig)


def test_learning_curve_legend_entries_are_distinct(experiment):
    fig = draw_learning_curves(experiment)
    entries = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(entries) == len(set(entries))
    if len(experiment.trials) == 4:
        assert any("advanced" in e for e in entries) and any("basic" in e for e in entries)
    close(fig)
