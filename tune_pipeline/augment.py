"""Batched augmentation on the training device, and loading transform scripts.

Every op takes a whole batch `(N, C, H, W)` and draws independent randomness
per image from an explicit `torch.Generator`, so a run is reproducible and a
resumed run continues the same random stream.  Ops accept uint8 or float
input and keep the dtype, except `normalize`, which turns uint8 [0, 255] into
normalised float32.

A transform script is a Python file, named by path, that defines

    def train_transform(images, ctx): ...   # uint8 batch -> float batch
    def test_transform(images, ctx): ...

where `ctx` is a `TransformContext` (mean, std, generator, epoch).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import io
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

REQUIRED_FUNCTIONS = ("train_transform", "test_transform")


@dataclass
class TransformContext:
    mean: torch.Tensor  # (C,) in [0, 1] units, on the device
    std: torch.Tensor
    generator: torch.Generator
    epoch: int = 0


def _rand(n: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device)


def _randint(high: int, n: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=generator, device=device)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror out-of-range indices back inside, excluding the edge pixel
    (PyTorch's "reflect" padding): -1 -> 1, size -> size - 2."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator,
                fill: str = "reflect") -> torch.Tensor:
    """Pad by `padding` pixels (reflected, or zeros with fill="zeros") and cut a
    random HxW window per image.

    No padded copy is made: each output pixel's source index is computed and
    read with one gather, in the input's dtype (uint8 moves a quarter of the
    bytes of float32).  benchmarks/bench_augment.py, 2 CPU cores, batch 128:
    5.7-7.1x the speed of the pad-then-index crop it replaced.
    """
    if padding <= 0:
        return images
    n, c, h, w = images.shape
    dev = images.device
    dy = _randint(2 * padding + 1, n, generator, dev) - padding
    dx = _randint(2 * padding + 1, n, generator, dev) - padding
    rows = dy[:, None] + torch.arange(h, device=dev)  # (N, H) source rows, may fall outside
    cols = dx[:, None] + torch.arange(w, device=dev)
    if fill == "reflect":
        rows, cols = _reflect(rows, h), _reflect(cols, w)
        outside = None
    else:
        outside = ((rows < 0) | (rows >= h))[:, :, None] | ((cols < 0) | (cols >= w))[:, None, :]
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    index = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    out = images.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)
    if outside is not None:
        out = out.masked_fill(outside[:, None], 0)
    return out


def random_flip(images: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability p."""
    flip = _rand(images.shape[0], generator, images.device) < p
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def cutout(images: torch.Tensor, size: int, generator: torch.Generator, p: float = 1.0,
           value: float = 0.0) -> torch.Tensor:
    """Fill one size x size square per image (centre anywhere, clipped at the
    border, as in DeVries & Taylor 2017) with `value`; applied with probability p."""
    n, _, h, w = images.shape
    dev = images.device
    cy = _randint(h, n, generator, dev)[:, None, None]
    cx = _randint(w, n, generator, dev)[:, None, None]
    apply = (_rand(n, generator, dev) < p)[:, None, None]
    ys = torch.arange(h, device=dev)[None, :, None]
    xs = torch.arange(w, device=dev)[None, None, :]
    half = size // 2
    mask = (ys >= cy - half) & (ys < cy - half + size) & (xs >= cx - half) & (xs < cx - half + size)
    mask = (mask & apply)[:, None]
    return images.masked_fill(mask, value)


def color_jitter(images: torch.Tensor, generator: torch.Generator, brightness: float = 0.0,
                 contrast: float = 0.0, saturation: float = 0.0) -> torch.Tensor:
    """Scale brightness, contrast and saturation by per-image factors drawn
    uniformly from [1 - s, 1 + s].  Works in [0, 255] float units."""
    was_uint8 = images.dtype == torch.uint8
    x = images.float()
    n, dev = x.shape[0], x.device

    def factors(strength):
        return (1 + strength * (2 * _rand(n, generator, dev) - 1))[:, None, None, None]

    if brightness:
        x = x * factors(brightness)
    if contrast:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * factors(contrast) + mean
    if saturation:
        gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        x = (x - gray) * factors(saturation) + gray
    x = x.clamp(0, 255)
    return x.round().to(torch.uint8) if was_uint8 else x


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] (or float in the same units) to float32 (x/255 - mean) / std."""
    scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
    shift = (mean / std).view(1, -1, 1, 1)
    # One float buffer, scaled in place; copy=True so a float input is never modified.
    return images.to(torch.float32, copy=True).mul_(scale).sub_(shift)


class TransformScriptError(Exception):
    """A transform script that is missing, fails to import, or breaks the contract."""


@dataclass(frozen=True)
class TransformScript:
    path: Path
    train_transform: object
    test_transform: object


IMPORT_TIMEOUT_S = 30.0  # validation's limit on importing a script: a page of defs takes milliseconds


def _exec_contained(spec, module, path: Path, timeout_s: float | None) -> None:
    """Run the script's module body with our own argv hidden (a script that
    parses sys.argv at import would read `tune search`'s arguments), its
    SystemExit caught, and, when `timeout_s` is given, a time limit."""
    outcome: dict = {}

    def run():
        saved_argv = sys.argv
        sys.argv = [str(path)]
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # SystemExit included: it must not end our process
            outcome["exc"] = exc
        finally:
            sys.argv = saved_argv

    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):  # argparse's usage text for arguments it never saw
        if timeout_s is None:
            run()
        else:
            worker = threading.Thread(target=run, name="transform-import", daemon=True)
            worker.start()
            worker.join(timeout_s)
            if worker.is_alive():
                raise TransformScriptError(
                    f"transform script {str(path)!r} did not finish importing within {timeout_s:g} s "
                    f"(does it wait for input or loop at import?)")
    exc = outcome.get("exc")
    if isinstance(exc, SystemExit):
        said = [line for line in captured.getvalue().splitlines() if line.strip()]
        detail = f": {said[-1].strip()}" if said else ""
        raise TransformScriptError(
            f"transform script {str(path)!r} exits at import (sys.exit({exc.code!r})){detail}; "
            f"keep script code under `if __name__ == \"__main__\":`")
    sys.stderr.write(captured.getvalue())  # whatever it printed on purpose
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    if exc is not None:  # a user's script can raise anything at import
        raise TransformScriptError(
            f"transform script {str(path)!r} failed to import: {type(exc).__name__}: {exc}")


def load_transform_script(path: str | Path, import_timeout_s: float | None = None) -> TransformScript:
    """Import a transform script by path and check it defines the contract.

    The module gets a name derived from its path so two scripts with the same
    file name never collide in sys.modules.  `import_timeout_s` bounds the
    import (validation passes IMPORT_TIMEOUT_S; a run has its trial_timeout).
    """
    path = Path(path)
    if path.is_dir():
        raise TransformScriptError(f"transform script {str(path)!r} is a folder, not a Python file")
    if not path.is_file():
        raise TransformScriptError(f"transform script {str(path)!r} does not exist")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"tune_pipeline_transform_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise TransformScriptError(f"transform script {str(path)!r} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    _exec_contained(spec, module, path, import_timeout_s)
    missing = [name for name in REQUIRED_FUNCTIONS if not callable(getattr(module, name, None))]
    if missing:
        raise TransformScriptError(
            f"transform script {str(path)!r} does not define {' and '.join(missing)}"
            f"(images, ctx)"
        )
    for name in REQUIRED_FUNCTIONS:
        try:
            inspect.signature(getattr(module, name)).bind(None, None)
        except TypeError:
            raise TransformScriptError(
                f"transform script {str(path)!r}: {name} must take (images, ctx)"
            ) from None
        except ValueError:
            pass  # builtins without a signature: trust them
    sys.modules.pop(module_name, None)
    return TransformScript(path, module.train_transform, module.test_transform)
