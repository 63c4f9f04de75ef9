"""The winner of an experiment, worded once.

The sweep's last lines, `tune status`, `tune report`'s line and the HTML
report all show the same summary: which trial won, by what and at which
epoch, with which values, its results, where its config is and the number
to quote.  Callers only choose the presentation (terminal lines or HTML);
the words and figures are built here.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from tune_pipeline.experiment import FAILED_STATE, FINISHED_STATE, STOPPED_STATE, Experiment, Trial
from tune_pipeline.labels import describe, labellers
from tune_pipeline.metrics import ORIGINAL_COLUMNS, QUOTED, best_epoch, fmt, quoted_accuracy, selection_note

INDENT = "  "


@dataclass(frozen=True)
class Summary:
    headline: str
    details: tuple[str, ...]  # short facts, each one line on an 80-column terminal

    def lines(self, width: int | None = None) -> list[str]:
        """Terminal lines: the headline, then each fact indented under it.
        With the terminal's `width`, a longer line is wrapped between words
        (its rest indented under it), not cut mid-word by the terminal; a word
        longer than the width (a path) stays whole, to copy."""
        lines = [self.headline, *(INDENT + d for d in self.details)]
        if not width:
            return lines
        import textwrap

        wrapped = []
        for line in lines:
            lead = line[:len(line) - len(line.lstrip())]
            wrapped += textwrap.wrap(line, width, subsequent_indent=lead + INDENT,
                                     break_on_hyphens=False, break_long_words=False) or [line]
        return wrapped

    def html(self) -> str:
        return "<br>\n".join(html.escape(line) for line in (self.headline, *self.details))


def winner_summary(experiment: Experiment, metric: str | None = None, best: Trial | None = None) -> Summary | None:
    """The best trial by `metric` (default: the sweep's), or None when no
    trial has a result yet.  `best`: the winner when the caller has it."""
    metric = metric or experiment.metric
    mode = experiment.mode_for(metric)
    if best is None:
        ranked = experiment.ranked(metric, mode)
        if not ranked:
            return None
        best = ranked[0]
    at = best_epoch(best.history, metric, mode)
    state = experiment.state(best)
    # While any trial may still change the ranking, the winner is only the best so far.
    settled = not experiment.live and set(experiment.state_counts()) <= {FINISHED_STATE, STOPPED_STATE, FAILED_STATE}
    head = "best trial" if settled else "best so far"
    headline = (f"{head} {best.trial_id}: {metric} {fmt(metric, best.best_value(metric, mode))} "
                f"at epoch {at.get('epoch', '?') if at else '?'}")
    if state != FINISHED_STATE:
        headline += f" ({state} at epoch {best.epochs})"
    by = labellers((t.config for t in experiment.trials), experiment.swept)
    last = best.last
    details = [f"with {describe(best.config, experiment.swept, by) or 'the fixed config'}",
               *("  ".join(f"{c} {fmt(c, last.get(c))}" for c in pair)
                 for pair in (ORIGINAL_COLUMNS[:2], ORIGINAL_COLUMNS[2:])),
               f"config: {best.path / 'params.json'}",
               # Last, where a reader's eye ends: the honest number and how it was chosen.
               f"to quote: {QUOTED} {fmt(QUOTED, quoted_accuracy(best.history, metric, mode))} "
               f"({selection_note(metric)})"]
    return Summary(headline, tuple(details))
