"""The training tasks: each one a config class and a strategy of the one loop.

A task is registered with :func:`register_task` next to its strategy::

    @register_task("context", "utterances classified in their video's context", ContextTrainConfig)
    def build_context(cfg: ContextTrainConfig) -> ContextStrategy: ...

:func:`polymodal.training.train` looks the config's ``task`` up here, builds the strategy
(data sets, model) and runs it on :class:`~polymodal.training.loop.Trainer`.  The
built-in tasks' modules are imported on first use, so ``polymodal.joint`` (which holds the
contrastive task) is not imported by a supervised run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from polymodal.errors import unknown_name_error
from polymodal.registry import Registry
from polymodal.training.config import RunConfig

if TYPE_CHECKING:
    from polymodal.training.loop import Strategy

#: Built-in task -> the module that registers it.
BUILTIN_TASKS = {
    "supervised": "polymodal.training.supervised",
    "context": "polymodal.training.context",
    "contrastive": "polymodal.joint.train",
    "captioning": "polymodal.captioning.train",
}

TASKS: Registry[Strategy] = Registry("training task")
_CONFIGS: dict[str, type[RunConfig]] = {}

B = TypeVar("B", bound=Callable[..., Any])


def register_task(name: str, description: str, config: type[RunConfig]) -> Callable[[B], B]:
    """Decorator: register ``builder(cfg) -> Strategy`` as task ``name`` with its config."""

    def deco(builder: B) -> B:
        TASKS.register(name, description)(builder)
        _CONFIGS[name] = config
        return builder

    return deco


def _ensure(name: str) -> None:
    if name not in TASKS and name in BUILTIN_TASKS:
        importlib.import_module(BUILTIN_TASKS[name])
    if name not in TASKS:
        raise unknown_name_error("training task", name, sorted(set(BUILTIN_TASKS) | set(_CONFIGS)))


def task_config(name: str) -> type[RunConfig]:
    """The config class of task ``name`` (``supervised``, ``context``, ``contrastive``,
    ``captioning``)."""
    _ensure(name)
    return _CONFIGS[name]


def build_strategy(cfg: RunConfig) -> Strategy:
    """The strategy of ``cfg``'s task, with its data and model built from ``cfg``."""
    _ensure(cfg.task)
    if not isinstance(cfg, _CONFIGS[cfg.task]):
        raise TypeError(
            f"task {cfg.task!r} needs a {_CONFIGS[cfg.task].__name__}, got {type(cfg).__name__}."
        )
    return TASKS.build(cfg.task, cfg=cfg)


def task_names() -> list[str]:
    """Every known task, built-in or registered."""
    return sorted(set(BUILTIN_TASKS) | set(_CONFIGS))


__all__ = ["BUILTIN_TASKS", "TASKS", "build_strategy", "register_task", "task_config", "task_names"]
