"""lwd-gym: Latent Weight Diffusion (LWD) and its baselines behind a Gymnasium/SB3-style API.

Importing the package registers the built-in environment ``lwd_gym/Bimodal-v0``.
"""
from lwd_gym._version import __version__  # noqa: F401

from lwd_gym import envs  # noqa: E402,F401  (registers the Gymnasium environments)
from lwd_gym.agents import BaseAgent, DPAgent, LDPAgent, LWDAgent, MLPAgent, RandomAgent  # noqa: E402
from lwd_gym.agents.config import AgentConfig, DPConfig, LDPConfig, LWDConfig, MLPConfig, RandomConfig  # noqa: E402
from lwd_gym.data import Normalizer, SnippetDataset, load_demonstrations  # noqa: E402
from lwd_gym.envs import BimodalEnv, BimodalExpert, make_bimodal_dataset  # noqa: E402
from lwd_gym.evaluation import EvalResult, compare, evaluate  # noqa: E402
from lwd_gym.reconstruction import ReconstructionResult, reconstruction_rollout  # noqa: E402
from lwd_gym.train_log import StageLog, TrainingLog  # noqa: E402
from lwd_gym.export import NumpyPolicy, export_policy  # noqa: E402
from lwd_gym.registry import available, make, register  # noqa: E402
from lwd_gym.wrappers import TaskId  # noqa: E402

__all__ = [
    "AgentConfig",
    "BaseAgent",
    "BimodalEnv",
    "BimodalExpert",
    "DPAgent",
    "DPConfig",
    "EvalResult",
    "LDPAgent",
    "LDPConfig",
    "LWDAgent",
    "LWDConfig",
    "MLPAgent",
    "MLPConfig",
    "NumpyPolicy",
    "RandomAgent",
    "RandomConfig",
    "Normalizer",
    "SnippetDataset",
    "TaskId",
    "available",
    "compare",
    "evaluate",
    "reconstruction_rollout",
    "ReconstructionResult",
    "StageLog",
    "TrainingLog",
    "export_policy",
    "load_demonstrations",
    "make",
    "make_bimodal_dataset",
    "register",
]
