"""The one training loop every stage of every agent uses (VAE, latent diffusion, BC, ...)."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from torch import nn
from tqdm.auto import tqdm


class BatchSource(Protocol):
    """Anything that can be indexed by a batch of row indices at once."""

    def __len__(self) -> int: ...

    def get_batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]: ...


class TensorBatches:
    """Rows of equally long tensors, e.g. encoded latents with their conditions."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        sizes = {len(t) for t in tensors.values()}
        if len(sizes) != 1:
            raise ValueError(f"tensors must have the same number of rows, got {sizes}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def get_batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}


def steps_for(num_epochs: int, num_rows: int, batch_size: int) -> int:
    """Gradient steps in ``num_epochs`` passes over ``num_rows`` rows."""
    return num_epochs * math.ceil(num_rows / batch_size)


def fit(
    model: nn.Module,
    loss_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor | tuple[torch.Tensor, dict[str, float]]],
    data: BatchSource,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    device: torch.device,
    weight_decay: float = 1e-6,
    warmup_steps: int = 0,
    ema_model: nn.Module | None = None,
    ema_power: float = 0.75,
    desc: str = "train",
    progress: bool = True,
) -> list[float]:
    """AdamW + cosine schedule with warm-up over ``steps`` shuffled mini-batches of ``data``.

    The data order comes from ``generator`` alone, so a run is reproducible from its seed.
    With ``ema_model`` (a copy of ``model``), an exponential moving average of the weights
    (diffusers' ``EMAModel``, Diffusion Policy's ``power=0.75`` warm-up) is written into it at
    the end.  Returns the loss of every step.
    """
    if len(data) == 0:
        raise ValueError(f"{desc}: no training rows")
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, min(warmup_steps, steps // 10), steps)
    ema = EMAModel(params, power=ema_power) if ema_model is not None else None
    losses: list[float] = []
    order = torch.empty(0, dtype=torch.long)
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        if len(order) == 0:  # a new epoch: reshuffle
            order = torch.randperm(len(data), generator=generator)
        index, order = order[:batch_size], order[batch_size:]
        batch = {k: v.to(device, non_blocking=True) for k, v in data.get_batch(index).items()}
        out = loss_fn(batch)
        loss, stats = out if isinstance(out, tuple) else (out, {})
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: loss became {loss.item()} at step {step}; lower the learning rate or check the data")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if ema is not None:
            ema.step(params)
        losses.append(loss.item())
        if step % 20 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{losses[-1]:.4g}", **{k: f"{v:.3g}" for k, v in stats.items()})
    bar.close()
    model.eval()
    if ema is not None:
        ema.copy_to([p for p in ema_model.parameters() if p.requires_grad])
        ema_model.eval()
    return losses
