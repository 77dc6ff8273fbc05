"""Small helpers shared by every module: device selection and seeding."""
from __future__ import annotations

import random

import numpy as np
import torch


def get_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"`` to CUDA when available (``cuda:LOCAL_RANK`` under torchrun), else CPU; pass anything else to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        from lwd_gym.distributed import local_device  # under torchrun: this process's own GPU

        return local_device() or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda[:N]'") from err


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global RNGs (the library itself uses explicit generators)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
