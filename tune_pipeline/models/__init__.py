"""The model registry: `create_model(name, num_classes=...)` and `list_models()`.

Each family lives in its own module and registers its constructors with
`register_model`; importing this package imports the families, which is the
only thing that happens at import time.
"""

from __future__ import annotations

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


def is_model(name: str) -> bool:
    return name in _REGISTRY


def create_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    try:
        constructor = _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; choose one of: {', '.join(list_models())}"
        ) from None
    return constructor(num_classes=num_classes, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Registration happens as a side effect of importing the family modules.
from tune_pipeline.models import convnet, preact_resnet, resnet, vgg  # noqa: E402,F401
