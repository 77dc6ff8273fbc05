"""Gymnasium wrappers for evaluating agents."""
from lwd_gym.wrappers.task_id import TaskId

__all__ = ["TaskId"]
