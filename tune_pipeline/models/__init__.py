"""The model registry: `create_model(name, num_classes=...)` and `list_models()`.

Each family lives in its own module and registers its constructors with
`register_model`; importing this package imports the families, which is the
only thing that happens at import time.
"""

from __future__ import annotations

import difflib
import re
from typing import Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


class UnknownModelError(ValueError):
    """Raised for a model name that is not registered; the message lists the choices."""


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def _folded(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def canonical_model(name) -> str | None:
    """The registered name for a spelling users already write (PreActResNet18,
    VGG16, ResNet-18): case and punctuation do not matter.  None if unknown."""
    if not isinstance(name, str):
        return None
    folded = _folded(name)
    return next((n for n in _REGISTRY if _folded(n) == folded), None)


def is_model(name: str) -> bool:
    return canonical_model(name) is not None


def unknown_model_message(name) -> str:
    close = difflib.get_close_matches(_folded(str(name)), {_folded(n): n for n in _REGISTRY}, n=1)
    hint = f" (did you mean {_by_folded()[close[0]]!r}?)" if close else ""
    return f"unknown model {name!r}{hint}; choose one of: {', '.join(list_models())}"


def _by_folded() -> dict[str, str]:
    return {_folded(n): n for n in _REGISTRY}


def create_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    canonical = canonical_model(name)
    if canonical is None:
        raise UnknownModelError(unknown_model_message(name))
    return _REGISTRY[canonical](num_classes=num_classes, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Registration happens as a side effect of importing the family modules.
from tune_pipeline.models import convnet, preact_resnet, resnet, vgg  # noqa: E402,F401
