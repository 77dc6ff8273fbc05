"""Agents by name: ``make("lwd", action_horizon=16)``.

Built-in agents are registered here; third-party packages add theirs through the entry-point
group ``lwd_gym.agents`` (``name = "package.module:AgentClass"``), loaded on first lookup.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from lwd_gym.agents import BaseAgent, DPAgent, LDPAgent, LWDAgent, MLPAgent, RandomAgent

ENTRY_POINT_GROUP = "lwd_gym.agents"
_REGISTRY: dict[str, type[BaseAgent]] = {}
_entry_points_loaded = False


def register(name: str, cls: type[BaseAgent], *, overwrite: bool = False) -> None:
    """Make ``cls`` available as ``make(name)``."""
    if not (isinstance(cls, type) and issubclass(cls, BaseAgent)):
        raise TypeError(f"{cls!r} is not a BaseAgent subclass")
    if name in _REGISTRY and _REGISTRY[name] is not cls and not overwrite:
        raise ValueError(f"an agent named {name!r} is already registered ({_REGISTRY[name].__name__}); pass overwrite=True")
    _REGISTRY[name] = cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            register(ep.name, ep.load())


def available() -> list[str]:
    """Names accepted by :func:`make`."""
    _load_entry_points()
    return sorted(_REGISTRY)


def make(name: str, config: Any = None, **kwargs: Any) -> BaseAgent:
    """Construct the agent registered as ``name`` from its ``config`` (e.g. an
    :class:`~lwd_gym.LWDConfig`, or a dict of its fields) and/or keyword fields (and ``device``)."""
    _load_entry_points()
    if name not in _REGISTRY:
        raise ValueError(f"unknown agent {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name](config=config, **kwargs)


register("lwd", LWDAgent)
register("dp", DPAgent)
register("ldp", LDPAgent)
register("mlp", MLPAgent)
register("random", RandomAgent)

__all__ = ["ENTRY_POINT_GROUP", "available", "make", "register"]
