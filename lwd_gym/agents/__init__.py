"""Agents: one module per agent over :class:`~lwd_gym.agents.base.BaseAgent`."""
from lwd_gym.agents.base import BaseAgent
from lwd_gym.agents.lwd import LWDAgent
from lwd_gym.agents.mlp import MLPAgent

__all__ = ["BaseAgent", "LWDAgent", "MLPAgent"]
