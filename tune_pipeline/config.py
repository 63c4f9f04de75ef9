"""The trial config: every key a training run accepts, its default and its check.

This is the one schema shared by `tune train` (a flat YAML) and `tune search`
(each parameter of a search space), so both report the same problems in the
same words.  A config is a flat dict of primitives and absolute paths.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from tune_pipeline.errors import UserError
from tune_pipeline.metrics import REPORTED_METRICS

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULERS = ("none", "step", "plateau", "cosine", "onecycle")
# The datasets by name, once: data.py loads them, the rest of the package
# reads their names and facts from here (no torch needed).
EMBEDDED_DATASET = "digits"     # shipped inside the package: no data_dir, no download
CIFAR_DATASETS = ("cifar10", "cifar100")
FOLDER_DATASET = "imagefolder"  # the user's images, one folder per class
DATASETS = (EMBEDDED_DATASET, *CIFAR_DATASETS, FOLDER_DATASET)
# Classes a dataset has before it is read (an image folder: its own folders decide).
CLASS_COUNTS = {EMBEDDED_DATASET: 10, "cifar10": 10, "cifar100": 100}
AMP_DTYPES = ("auto", "float16", "bfloat16")
PATH_KEYS = ("runtime_transform_script", "data_dir")
REPEAT_KEY = "seed"  # a grid's repeats (tune.num_samples) differ by this key, one value per repeat


def check_metric_name(metric: str | None, option: str = "--metric") -> None:
    if metric is not None and metric not in REPORTED_METRICS:
        raise UserError(f"{option}: {metric!r} is not a reported metric; choose one of "
                        f"{', '.join(REPORTED_METRICS)}")


@dataclass(frozen=True)
class Field:
    default: Any
    kind: type
    check: Callable[[Any], str | None]
    help: str


def _positive(v):
    return None if v > 0 else "must be > 0"


def _non_negative(v):
    return None if v >= 0 else "must be >= 0"


def _fraction(v):
    return None if 0 <= v < 1 else "must be in [0, 1)"


def _choice(options):
    def check(v):
        return None if v in options else f"must be one of {', '.join(options)}"
    return check


def _model(v):
    from tune_pipeline.models import is_model, unknown_model_message
    return None if is_model(v) else unknown_model_message(v)


def _device(v):
    ok = v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit())
    return None if ok else "must be auto, cpu, cuda, cuda:N or mps"


def _anything(v):
    return None


class Switch:
    """The kind of a key that takes true, false or "auto" (the run decides)."""


def _switch(v):
    return None if isinstance(v, bool) or v == "auto" else "must be true, false or auto"


FIELDS: dict[str, Field] = {
    "model": Field("small_cnn", str, _model, "model name (tune models)"),
    "runtime_transform_script": Field(
        "basic", str, _anything,
        "Python file giving train_transform and test_transform, or a stock one: basic, advanced"),
    "optimizer": Field("sgd", str, _choice(OPTIMIZERS), "sgd, adam or adamw"),
    "learning_rate": Field(0.2, float, _positive,
                           "peak learning rate; 0.2 with batch 256 and one-cycle was the best "
                           "small_cnn CIFAR-10 recipe measured (BENCHMARKS.md)"),
    "momentum": Field(0.9, float, _fraction, "SGD momentum / Adam beta1; 0.9, the usual value, "
                      "was not beaten in the measured recipe"),
    "weight_decay": Field(5.0e-4, float, _non_negative,
                          "L2 weight decay; 5e-4, the measured recipe's, standard for CIFAR CNNs"),
    "nesterov": Field(True, bool, _anything,
                      "Nesterov momentum (sgd); on in the measured recipe, it tolerates the high lr"),
    "epochs": Field(3, int, _positive, "training epochs; 3 reach >= 80% on CIFAR-10 with small_cnn"),
    "batch_size": Field(256, int, _positive,
                        "training batch size; 256 with lr 0.2 in the measured recipe, and "
                        "faster per image than 128 on CPU and GPU"),
    "dataset": Field(EMBEDDED_DATASET, str, _choice(DATASETS), ", ".join(DATASETS)),
    "data_dir": Field("data", str, _anything, f"where datasets live ({FOLDER_DATASET}: its root)"),
    "image_size": Field(32, int, _positive, "imagefolder images are resized to this"),
    "lr_scheduler": Field("onecycle", str, _choice(LR_SCHEDULERS),
                          "LR schedule; one-cycle (warm up a quarter, anneal to 0) suits short runs"),
    "lr_step_size": Field(1, int, _positive, "step: epochs between decays"),
    "lr_gamma": Field(0.1, float, _positive, "step/plateau: decay factor"),
    "lr_patience": Field(2, int, _non_negative, "plateau: epochs without improvement"),
    "warmup_epochs": Field(0.0, float, _non_negative, "linear warmup epochs (onecycle: its rise, default a quarter of the run)"),
    "label_smoothing": Field(0.1, float, _fraction,
                             "cross-entropy label smoothing; 0.1 in the measured recipe"),
    "grad_clip": Field(0.0, float, _non_negative, "max gradient norm, 0 = off"),
    "amp": Field(True, bool, _anything, "mixed precision on/off"),
    "amp_dtype": Field("auto", str, _choice(AMP_DTYPES), "auto, float16 or bfloat16"),
    "channels_last": Field(True, bool, _anything, "NHWC memory layout"),
    "compile": Field(False, Switch, _switch,
                     "torch.compile the model; auto: only where it pays (compile_policy.py)"),
    "test_time_flip": Field(True, bool, _anything,
                            "average logits with the mirrored image (validation and test); +1.1% "
                            "on CIFAR-10 in the measured recipe for one extra forward pass"),
    "device": Field("auto", str, _device, "auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps"),
    "seed": Field(0, int, _non_negative, "seed for init, data order and augmentation"),
    "val_fraction": Field(0.1, float, _fraction,
                          "share of each class held out of training to select on (stratified); "
                          "0 = none: select on test data, and image folders train on val/ too"),
    "val_seed": Field(0, int, _non_negative,
                      "seed of the validation split; apart from seed so every trial of a "
                      "sweep holds out the same images"),
    "max_train_images": Field(0, int, _non_negative, "train on a fixed random subset of N images, 0 = all"),
    "max_test_images": Field(0, int, _non_negative,
                             "test and validate on fixed random subsets of at most N images, 0 = all"),
    "trial_timeout": Field(0.0, float, _non_negative, "wall seconds a run may take, 0 = no limit"),
    "skip_bad_images": Field(False, bool, _anything, "imagefolder: skip (and count) files that do not decode"),
}


def suggest(name, options) -> str:
    if not isinstance(name, str):  # a YAML key may be 1, true or null
        return ""
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def coerce(key: str, value: Any) -> tuple[Any, str | None]:
    """Return (value converted to the field's type, problem or None)."""
    field = FIELDS[key]
    kind = field.kind
    if kind is Switch:
        return value, None  # the check names the choices
    if kind is bool:
        if isinstance(value, bool):
            return value, None
        return value, f"must be true or false, got {value!r}"
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, f"must be an integer, got {value!r}"
        if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
            return value, f"must be an integer, got {value!r}"  # int(nan) raises, int(inf) overflows
        return int(value), None
    if kind is float:
        if isinstance(value, str):
            # PyYAML reads 1e-5 as a string (YAML 1.1 wants 1.0e-5); accept it.
            try:
                value = float(value)
            except ValueError:
                return value, f"must be a number, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, f"must be a number, got {value!r}"
        if not math.isfinite(value):
            return value, f"must be finite, got {value!r}"
        return float(value), None
    if not isinstance(value, str):
        return value, f"must be a string, got {value!r}"
    return value, None


def check_value(key: str, value: Any) -> tuple[Any, str | None]:
    value, problem = coerce(key, value)
    if problem is None:
        problem = FIELDS[key].check(value)
        if problem and repr(value) not in problem:  # every refusal quotes the value
            problem = f"{problem}, got {value!r}"
        if problem is None and key == "model":  # the registered spelling is what gets recorded
            from tune_pipeline.models import canonical_model
            value = canonical_model(value)
    return value, problem


# The defaults above are the measured CIFAR-10 recipe.  A dataset far smaller
# than CIFAR-10 gets a few training steps per epoch at batch 256, and the
# recipe's learning rate diverged there (digits, 1,293 training images: 6 steps
# an epoch, 10% accuracy after 3).  The one rule: a dataset listed here takes
# these values for the keys a config leaves unset; every other key, and every
# other dataset, takes the defaults above.  Measured in BENCHMARKS.md
# ("Defaults where a new user starts").
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    EMBEDDED_DATASET: {"batch_size": 64, "learning_rate": 0.05},
}


def default_for(key: str, dataset: Any) -> Any:
    """The default of `key` for a run on `dataset` (DATASET_DEFAULTS, else FIELDS)."""
    per_dataset = DATASET_DEFAULTS.get(dataset, {}) if isinstance(dataset, str) else {}
    return per_dataset.get(key, FIELDS[key].default)


def resolve_path(value: str, base_dirs: list[Path]) -> Path:
    """An absolute path for `value`: the first base dir where it exists, else
    relative to the working directory (where a data dir will be created)."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    for base in base_dirs:
        if (base / path).exists():
            return (base / path).resolve()
    return (Path.cwd() / path).resolve()


def path_bases(source: Path | None) -> list[Path]:
    """Where relative paths are looked up: beside the YAML file, then the
    working directory.  (Stock transform scripts are named, not looked up.)"""
    bases = [Path.cwd()]
    if source is not None:
        bases.insert(0, source.resolve().parent)
    return bases


def check_transform_script(name: str | Path) -> str | None:
    """None, or why the script `name` names (stock or a path) cannot be used."""
    from tune_pipeline.augment import IMPORT_TIMEOUT_S, TransformScriptError, load_transform_script
    try:
        load_transform_script(name, import_timeout_s=IMPORT_TIMEOUT_S)
    except TransformScriptError as exc:
        return str(exc)
    return None


def resolve_script(value: str, base_dirs: list[Path]) -> str:
    """A stock script's short name as given; any other value an absolute path."""
    from tune_pipeline.shipped import is_stock_script

    return value if is_stock_script(value) else str(resolve_path(value, base_dirs))


def validate_config(raw: dict, source: str = "config", base_dirs: list[Path] | None = None,
                    check_paths: bool = True) -> dict:
    """Defaults filled in, values converted and checked, paths made absolute.

    Raises UserError listing every problem, each prefixed with `source: key`.
    `check_paths=False` takes paths as given: a trial's config was checked by
    its driver, on a machine whose files this node may not have.
    """
    if base_dirs is None:
        base_dirs = path_bases(None)
    problems: list[str] = []
    config: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in FIELDS:
            problems.append(f"{source}: unknown key {key!r}{suggest(key, FIELDS)}")
            continue
        value, problem = check_value(key, value)
        if problem:
            problems.append(f"{source}: {key}: {problem}")
        config[key] = value
    dataset = config.get("dataset", FIELDS["dataset"].default)
    for key in FIELDS:
        config.setdefault(key, default_for(key, dataset))
    if not check_paths:
        if problems:
            raise UserError(problems)
        return config
    given_script = config["runtime_transform_script"]
    for key in PATH_KEYS:
        if isinstance(config[key], str):
            config[key] = (resolve_script(config[key], base_dirs) if key == "runtime_transform_script"
                           else str(resolve_path(config[key], base_dirs)))
    if isinstance(config["runtime_transform_script"], str) and not any(
        p.startswith(f"{source}: runtime_transform_script") for p in problems
    ):
        script = config["runtime_transform_script"]
        if not Path(script).exists() and not Path(given_script).expanduser().is_absolute() \
                and script != given_script:
            # Name every place looked in, not only the last fallback.
            places = ", ".join(dict.fromkeys(str(b) for b in base_dirs))
            problem = (f"transform script {given_script!r} does not exist (looked in {places}; "
                       f"stock scripts: {', '.join(stock_script_names())})")
        else:
            problem = check_transform_script(script)
        if problem:
            problems.append(f"{source}: runtime_transform_script: {problem}")
    if problems:
        raise UserError(problems)
    return config


MAX_YAML_BYTES = 1 << 20  # a search space or config is a page of text; /dev/zero is not
# Values in a file once its aliases are expanded.  Nine lines of aliases can
# stand for 9**9 values (a "billion laughs"); a real space is a few hundred.
MAX_YAML_VALUES = 100_000


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps
    the last silently, so a sweep would run with a value the user overwrote)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            try:
                key = self.construct_object(key_node, deep=True)
                hash(key)
            except (TypeError, yaml.constructor.ConstructorError):
                continue  # the base class reports unhashable keys in its own words
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicated key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_text_bounded(path: Path, limit: int = MAX_YAML_BYTES) -> str:
    """A file's text, refusing one larger than `limit` bytes without reading it all."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise UserError(f"{path}: larger than {limit // 1024} KiB; not a search space or config file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _expanded_size(root) -> int:
    """How many values the node graph holds with every alias expanded, counted
    without expanding anything; a node that contains itself (a recursive
    alias) is a ValueError naming its line.  Iterative: no recursion limit."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            continue
        if id(node) in open_nodes:
            raise ValueError(f"line {node.start_mark.line + 1}: a recursive alias (this node contains itself)")
        open_nodes.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise ValueError(f"line {node.start_mark.line + 1}: a recursive alias "
                                 f"(the node anchored on line {child.start_mark.line + 1} contains itself)")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _as_tree(value):
    """A copy in which no two places share an object (an alias's value is
    copied wherever it is used), so a change to one never shows in another."""
    if isinstance(value, dict):
        return {k: _as_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_tree(v) for v in value]
    return value


def load_yaml_text(text: str, source: str) -> Any:
    """YAML text to data, aliases expanded and bounded before anything is
    built from it.  Raises UserError naming `source`."""
    loader = None
    try:
        loader = _UniqueKeyLoader(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            values = _expanded_size(node)
        except ValueError as exc:
            raise UserError(f"{source}: {exc}") from None
        if values > MAX_YAML_VALUES:
            raise UserError(f"{source}: holds {values:,} values once its aliases are expanded, more than "
                            f"the {MAX_YAML_VALUES:,} a search space or config may have (an alias bomb?)")
        return _as_tree(loader.construct_document(node))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{source}:{where} malformed YAML: {reason}") from None
    except RecursionError:
        raise UserError(f"{source}: malformed YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a missing, huge or malformed file, one with a key
    given twice, or one whose aliases expand past MAX_YAML_VALUES, is a
    UserError naming it."""
    return load_yaml_text(read_text_bounded(Path(path)), str(path))


def stock_script_names() -> list[str]:
    from tune_pipeline.shipped import stock_scripts

    return stock_scripts()


def parse_set_option(items: list[str], source: str = "--set") -> dict:
    """`key=value` strings to a dict; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    problems = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            problems.append(f"{source}: expected key=value, got {item!r}")
            continue
        try:
            out[key.strip()] = load_yaml_text(value, f"{source} {key.strip()}")
        except UserError as exc:
            if "malformed YAML" not in exc.problems[0]:
                raise  # an alias bomb: refused as in a file
            out[key.strip()] = value
    if problems:
        raise UserError(problems)
    return out


def load_config_file(path: Path, overrides: list[str] | None = None) -> dict:
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of training keys, got {type(raw).__name__}")
    raw.update(parse_set_option(overrides or []))
    return validate_config(raw, source=str(path), base_dirs=path_bases(Path(path)))
