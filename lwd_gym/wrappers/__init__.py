"""Gymnasium wrappers: action chunks, perturbations and noise, task ids."""
from lwd_gym.wrappers.chunk import ActionChunk
from lwd_gym.wrappers.end_effector import EndEffectorPerturbation
from lwd_gym.wrappers.noise import ActionNoise, ObservationNoise
from lwd_gym.wrappers.pusht import PushTPerturbation
from lwd_gym.wrappers.task_id import TaskId

__all__ = ["ActionChunk", "ActionNoise", "EndEffectorPerturbation", "ObservationNoise", "PushTPerturbation", "TaskId"]
