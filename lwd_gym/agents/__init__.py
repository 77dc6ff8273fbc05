"""Agents: one module per agent over :class:`~lwd_gym.agents.base.BaseAgent`."""
from lwd_gym.agents.base import BaseAgent
from lwd_gym.agents.behaviours import BehaviourFilter
from lwd_gym.agents.config import AgentConfig, DPConfig, LDPConfig, LatentDiffusionConfig, LWDConfig, MLPConfig, RandomConfig
from lwd_gym.agents.dp import DPAgent
from lwd_gym.agents.latent import LatentDiffusionAgent
from lwd_gym.agents.ldp import LDPAgent
from lwd_gym.agents.lwd import LWDAgent
from lwd_gym.agents.mlp import MLPAgent
from lwd_gym.agents.random import RandomAgent

__all__ = [
    "AgentConfig", "DPConfig", "LDPConfig", "LWDConfig", "LatentDiffusionConfig", "MLPConfig", "RandomConfig",
    "BaseAgent", "BehaviourFilter", "DPAgent", "LDPAgent", "LWDAgent", "LatentDiffusionAgent", "MLPAgent", "RandomAgent",
]  # fmt: skip
