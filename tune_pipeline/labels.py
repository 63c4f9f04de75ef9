"""How a parameter's value is shown to a person: the live table, `tune status`,
export's markdown, the plots and the report all label values here.

A value is labelled among its siblings (the other values of the same
parameter): a script path by its file stem with the affixes every sibling
shares dropped (`runtime_transform_basic.py`, `runtime_transform_advanced.py`
-> `basic`, `advanced`), a number in the shortest `g` form that tells it from
its siblings.  Two different values never get the same label; callers group by
value (`Labeller.key`), never by label.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

MISSING = "-"
_SEPARATORS = "_-. "
_PATH_SUFFIXES = (".py", ".yaml", ".yml", ".json")


def key(value):
    """A hashable identity for grouping: True is not 1, 1 is 1.0."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("num", value if not (isinstance(value, float) and math.isnan(value)) else "nan")
    if value is None or isinstance(value, str):
        return ("str", value)
    return ("repr", repr(value))


def number(value, precision: int = 3) -> str:
    """A number in a short form: 0.02, 5e-4, 1e12, 256; integral floats without `.0`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    text = f"{value:.{precision}g}"
    if "e" in text:  # 1e-05 -> 1e-5, 1e+12 -> 1e12
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def _is_path(value) -> bool:
    return isinstance(value, str) and ("/" in value or value.endswith(_PATH_SUFFIXES))


def _stem_parts(path: str) -> list[str]:
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if parts:
        for suffix in _PATH_SUFFIXES:
            if parts[-1].endswith(suffix) and len(parts[-1]) > len(suffix):
                parts[-1] = parts[-1][: -len(suffix)]
                break
    return parts or [path]


def _common_affixes(texts: list[str]) -> tuple[int, int]:
    """Lengths of the prefix and suffix all texts share, cut at a separator,
    leaving every text something of its own."""
    if len(texts) < 2:
        return 0, 0
    shortest = min(len(t) for t in texts)

    def shared(seq) -> int:
        n = 0
        while n < shortest and len({s[n] for s in seq}) == 1:
            n += 1
        return n

    prefix = shared(texts)
    while prefix and texts[0][prefix - 1] not in _SEPARATORS:
        prefix -= 1  # back to a separator: `resnet18`/`resnet34` keep their names
    reversed_texts = [t[::-1] for t in texts]
    suffix = shared(reversed_texts)
    while suffix and reversed_texts[0][suffix - 1] not in _SEPARATORS:
        suffix -= 1
    if any(len(t) - prefix - suffix < 1 for t in texts):
        return 0, 0
    return prefix, suffix


def _label_texts(texts: list[str]) -> list[str]:
    prefix, suffix = _common_affixes(texts)
    return [t[prefix: len(t) - suffix] for t in texts]


def _path_labels(paths: list[str]) -> list[str]:
    """The file stem, with as many parent folders as it takes to be unique."""
    split = [_stem_parts(p) for p in paths]
    depth = 1
    while True:
        tails = ["/".join(parts[-depth:]) for parts in split]
        if len(set(tails)) == len(set(paths)) or depth >= max(len(p) for p in split):
            break
        depth += 1
    if depth == 1:
        return _label_texts(tails)
    return tails


def _unique(values: list, labels: list[str]) -> bool:
    by_label: dict[str, set] = {}
    for value, label in zip(values, labels):
        by_label.setdefault(label, set()).add(key(value))
    return all(len(keys) == 1 for keys in by_label.values())


class Labeller:
    """Labels for one parameter's values, each told apart from its siblings.

    Siblings can be added one at a time (`add`), as a live sweep creates
    trials: a number that needs no more digits than its siblings have is
    labelled on its own; only a new text value, or a number that would
    collide with a sibling's label, relabels the siblings (at most 15 times
    for numbers: each time adds a digit).  `relabelled` counts the values
    labelled, the work done."""

    def __init__(self, values: Iterable = ()):
        self._distinct: dict = {}
        self._labels: dict = {}   # key -> label
        self._owners: dict = {}   # label -> key, to see a collision at once
        self._precision = 3
        self._sorted: list | None = None
        self.relabelled = 0
        for value in values:
            self._distinct.setdefault(key(value), value)
        self._relabel()

    def add(self, value) -> None:
        k = key(value)
        if k in self._distinct:
            return
        self._distinct[k] = value
        self._sorted = None
        if k[0] == "num":
            text = number(value, self._precision)
            if text not in self._owners:
                self._labels[k], self._owners[text] = text, k
                self.relabelled += 1
                return
        self._relabel()

    def _relabel(self) -> None:
        values = list(self._distinct.values())
        labels, self._precision = _labels_and_precision(values)
        self._labels = dict(zip(self._distinct, labels))
        self._owners = {text: k for k, text in self._labels.items()}
        self.relabelled += len(values)

    def __call__(self, value) -> str:
        found = self._labels.get(key(value))
        return found if found is not None else label(value)

    @property
    def values(self) -> list:
        """The distinct values: numbers ascending, then text."""
        if self._sorted is None:
            self._sorted = sorted(self._distinct.values(), key=_order)
        return self._sorted

    @property
    def labels(self) -> list[str]:
        """In the order of `values` (numbers ascending, then text)."""
        return [self._labels[key(v)] for v in self.values]

    @property
    def width(self) -> int:
        return max((len(t) for t in self._labels.values()), default=1)


def _order(value):
    k = key(value)
    if k[0] == "num":
        return (0, value if k[1] != "nan" else math.inf, "")
    return (1, 0, str(value))


def _labels_for(values: list) -> list[str]:
    return _labels_and_precision(values)[0]


def _labels_and_precision(values: list) -> tuple[list[str], int]:
    """The labels, and the digits the numbers among them needed to differ."""
    labels: list[str | None] = [None] * len(values)
    numbers = [i for i, v in enumerate(values) if key(v)[0] == "num"]
    precision = 3
    texts: list[str] = []
    for precision in range(3, 18):
        texts = [number(values[i], precision) for i in numbers]
        if len(set(texts)) == len(texts):
            break
    for i, text in zip(numbers, texts):
        labels[i] = text
    paths = [i for i, v in enumerate(values) if _is_path(v)]
    for i, text in zip(paths, _path_labels([values[i] for i in paths])):
        labels[i] = text
    words = [i for i, v in enumerate(values) if isinstance(v, str) and not _is_path(v)]
    for i, text in zip(words, _label_texts([values[i] for i in words])):
        labels[i] = text
    for i, value in enumerate(values):
        if labels[i] is None:
            labels[i] = MISSING if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    if not _unique(values, labels):  # a path's stem equal to a word, say: show them whole
        labels = [str(v) if isinstance(v, str) else labels[i] for i, v in enumerate(values)]
    if not _unique(values, labels):  # "1" the text and 1 the number
        labels = [repr(v) if isinstance(v, str) else label for label, v in zip(labels, values)]
    return labels, precision  # type: ignore[return-value]


def label(value) -> str:
    """One value on its own (no siblings): a path by its file stem, a number short."""
    return _labels_for([value])[0]


def labellers(configs: Iterable[dict], keys: Iterable[str]) -> dict[str, Labeller]:
    """One labeller per parameter, over every config's value of it."""
    configs = list(configs)
    return {k: Labeller(c.get(k) for c in configs) for k in keys}


def describe(config: dict, keys: Iterable[str], by: dict[str, Labeller] | None = None, sep: str = ", ") -> str:
    """`key=label` for each key, e.g. `runtime_transform_script=basic, learning_rate=0.02`."""
    by = by or {}
    return sep.join(f"{k}={by[k](config.get(k)) if k in by else label(config.get(k))}" for k in keys)


def fit(text: str, width: int) -> str:
    """Cut a free text (a title, an error) to `width` characters with an ellipsis."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"

