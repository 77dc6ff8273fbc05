"""The one training loop every stage of every agent uses (VAE, latent diffusion, BC, ...).

:func:`fit` can save its whole state (weights, optimiser, schedule, EMA, the data order and
every random generator the loss draws from) to a :class:`TrainCheckpoint` every few steps; a
run killed at any point and started again with the same checkpoint resumes from the last save
and ends with exactly the weights of an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from lwd_gym import distributed
from lwd_gym.checkpoint import load_checkpoint, save_checkpoint
from lwd_gym.train_log import StageWriter

#: ``loss_fn(batch, step)`` returns the loss, or ``(loss, stats)`` with floats shown on the bar.
LossFn = Callable[[dict[str, torch.Tensor], int], "torch.Tensor | tuple[torch.Tensor, dict[str, float]]"]


class BatchSource(Protocol):
    """Anything that can be indexed by a batch of row indices at once."""

    def __len__(self) -> int: ...

    def get_batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]: ...

    # Optional: ``to(device)`` returning a copy on ``device``; :func:`fit` then gathers batches there.


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

    def to(self, device: torch.device | str) -> TensorBatches:
        """A copy whose tensors live on ``device``."""
        return TensorBatches(**{k: v.to(device) for k, v in self.tensors.items()})


def steps_for(num_epochs: int, num_rows: int, batch_size: int) -> int:
    """Gradient steps in ``num_epochs`` passes over ``num_rows`` rows."""
    return num_epochs * math.ceil(num_rows / batch_size)


#: The fewest gradient steps a stage trains when its budget comes from epochs.  An epoch budget
#: alone gives a few hundred steps on a small dataset at batch 256 (e.g. 300 two-paths
#: demonstrations with 16-step snippets: ~23 steps per epoch), with a 500-step warm-up for the
#: diffusion stages.  Measured here on the two-paths task (batch 64, lr 1e-3), the validation
#: losses of DP and LDP still fell until ~1,200-1,500 steps; at the lower default learning rates
#: convergence is slower, not faster.  This is a floor, not a guarantee: check
#: ``agent.training_log[stage].validation()`` (tests/MARGINS.md has the curves' numbers).
MIN_STEPS = 2000


def stage_steps(steps: int | None, epochs: int, num_rows: int, batch_size: int, name: str = "steps") -> int:
    """A stage's gradient steps: ``steps`` if given (a positive integer), else ``epochs`` passes
    over ``num_rows`` rows but at least :data:`MIN_STEPS`."""
    if steps is not None:
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ValueError(f"{name} must be a positive integer number of gradient steps (None: the default budget), got {steps!r}")
        return int(steps)
    return max(steps_for(epochs, num_rows, batch_size), MIN_STEPS)


@dataclass
class TrainCheckpoint:
    """Where :func:`fit` keeps its resumable state, and how often it writes it.

    :param path: the state file (safetensors + JSON, replaced atomically at every save).
    :param every: save after every ``every`` gradient steps (and after the last one).
    :param fingerprint: JSON-able description of the run (config, data, steps); a saved state
        with a different fingerprint is refused rather than silently mixed into another run.
    :param generators: random generators the loss draws from (saved and restored with the state).
    """

    path: Path
    every: int
    fingerprint: Mapping[str, Any]
    generators: Mapping[str, torch.Generator] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if int(self.every) != self.every or self.every < 1:
            raise ValueError(f"checkpoint_every must be a positive number of steps, got {self.every!r}")
        # Hashed so the JSON stays small whatever the config holds (lists of widths, spaces...).
        self.run_id = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fit(
    model: nn.Module,
    loss_fn: LossFn,
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
    checkpoint: TrainCheckpoint | None = None,
    desc: str = "train",
    progress: bool = True,
    log: StageWriter | None = None,
    validate: Callable[[], float] | None = None,
    val_every: int | None = None,
    evaluate: Callable[[nn.Module], float] | None = None,
    eval_every: int | None = None,
    keep_best_validation: bool = False,
) -> list[float]:
    """AdamW + cosine schedule with warm-up over ``steps`` shuffled mini-batches of ``data``.

    The data order comes from ``generator`` alone, so a run is reproducible from its seed.
    With ``ema_model`` (a copy of ``model``), an exponential moving average of the weights
    (diffusers' ``EMAModel``, Diffusion Policy's ``power=0.75`` warm-up) is written into it at
    the end.  With ``checkpoint``, training resumes from its saved state if there is one and
    saves the state every ``checkpoint.every`` steps.  Returns the loss of every step.

    Visibility: every step's loss, learning rate and loss terms go to ``log`` (a
    :class:`~lwd_gym.train_log.StageWriter`); ``validate()`` (a held-out loss, computed without
    gradients) runs every ``val_every`` steps (default: 50 times per run) and at the last step.
    ``evaluate(module)`` (e.g. a success rate in the env) runs every ``eval_every`` steps and at
    the last step on the weights that act (the EMA copy when there is one); the best-scoring
    weights are kept and restored at the end (Diffusion Policy's top-k by test score, k = 1).
    With ``keep_best_validation`` and no ``evaluate``, the weights of the lowest ``validate()``
    are kept and restored instead (Keras' ``restore_best_weights``); a stage with ``ema_model``
    refuses it, since its validation loss is measured on the training weights, not on the EMA
    copy it acts with.  ``log.log.kept_step`` records the step of the weights restored.

    Under ``torchrun`` (see :mod:`lwd_gym.distributed`) the model is wrapped in
    ``DistributedDataParallel``, each rank computes its share of every global batch of
    ``batch_size`` rows, and only rank 0 shows progress and writes the state file.

    :raises FloatingPointError: the loss or the gradients became NaN/inf; the weights (and the
        checkpoint, if any) are those of the last good step.
    """
    if len(data) == 0:
        raise ValueError(f"{desc}: no training rows")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"{desc}: steps and batch_size must be >= 1, got steps={steps}, batch_size={batch_size}")
    val_every = val_every or max(1, steps // 50)
    if keep_best_validation and ema_model is not None:
        raise ValueError(f"{desc}: keep_best_validation needs a stage without an EMA copy (its validation loss is not measured on the weights that act)")
    if keep_best_validation and validate is None:
        raise ValueError(f"{desc}: keep_best_validation needs a validation loss (validate)")
    by_validation = keep_best_validation and evaluate is None  # an in-training evaluation, when given, decides
    acting = ema_model if ema_model is not None else model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, min(warmup_steps, steps // 10), steps)
    ema = EMAModel(params, power=ema_power) if ema_model is not None else None
    state = _TrainState(model, optimizer, schedule, ema, generator, checkpoint, acting if evaluate is not None or by_validation else None)
    losses: list[float] = []
    order = torch.empty(0, dtype=torch.long)
    start = 0
    if checkpoint is not None and checkpoint.path.exists():
        start, order, losses = state.load(device)
        if start > steps:
            raise ValueError(f"{desc}: {checkpoint.path} was saved at step {start}, past this run's {steps} steps")
    if log is not None:
        log.log.rows[:] = state.log_rows[:start] if state.log_rows else [{"step": i + 1, "loss": v} for i, v in enumerate(losses)]
        log.start()
        state.writer = log
    # State datasets are small: on an accelerator, keep them there so a batch is one on-device
    # gather, not a host gather plus a copy (that was ~45 % of a VAE step on an H100).
    data_on_device = device.type != "cpu" and hasattr(data, "to")
    if data_on_device:
        data = data.to(device)
    compute = _LossModule(model, loss_fn)
    if distributed.is_distributed():
        compute = DistributedDataParallel(compute, device_ids=[device] if device.type == "cuda" else None)
    main = distributed.is_main_process()
    bar = tqdm(range(start, steps), desc=desc, disable=not (progress and main), leave=False, initial=start, total=steps)
    # the stage's wall-clock in the log continues a resumed run's (NaN in a pre-"seconds" history reads as 0)
    seconds = log.log.rows[-1].get("seconds", 0.0) if log is not None and log.log.rows else 0.0
    clock = time.perf_counter() - (0.0 if math.isnan(seconds) else seconds)
    try:
        for step in bar:
            if len(order) == 0:  # a new epoch: reshuffle
                order = torch.randperm(len(data), generator=generator)
            index, order = order[:batch_size], order[batch_size:]
            index, scale = distributed.shard(index)  # the whole batch in a single process
            batch = {k: v.to(device, non_blocking=True) for k, v in data.get_batch(index.to(device) if data_on_device else index).items()}
            out = compute(batch, step)
            loss, stats = out if isinstance(out, tuple) else (out, {})
            loss = loss * scale if scale != 1.0 else loss
            global_loss = distributed.all_mean(loss)  # the same value (and NaN decision) on every rank
            if not torch.isfinite(global_loss):
                raise FloatingPointError(f"{desc}: loss became {global_loss.item()} at step {step}; " + state.advice())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # DDP averages the gradients over ranks here
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
            if not torch.isfinite(grad_norm):
                raise FloatingPointError(f"{desc}: gradients became {grad_norm.item()} at step {step} (loss {global_loss.item():.4g}); " + state.advice())
            lr_used = schedule.get_last_lr()[0]
            optimizer.step()
            schedule.step()
            if ema is not None:
                ema.step(params)
            losses.append(global_loss.item())
            last = step == steps - 1
            if log is not None:
                log.append({"step": step + 1, "loss": losses[-1], "lr": lr_used, "val_loss": math.nan, "eval_success": math.nan,
                            "seconds": time.perf_counter() - clock, **stats})  # fmt: skip
            if validate is not None and ((step + 1) % val_every == 0 or last):
                model.eval()
                with torch.no_grad():
                    val_loss = float(validate())
                model.train()
                if log is not None:
                    log.update(val_loss=val_loss)
                stats = {**stats, "val": val_loss}
                if by_validation:
                    state.offer_best(step + 1, -val_loss)
            if evaluate is not None and eval_every and ((step + 1) % eval_every == 0 or last):
                if ema is not None:
                    ema.copy_to([p for p in ema_model.parameters() if p.requires_grad])
                acting.eval()
                score = float(evaluate(acting))
                model.train()
                if log is not None:
                    log.update(eval_success=score)
                state.offer_best(step + 1, score)
            if log is not None:
                log.commit()
            if step % 20 == 0 or last:
                bar.set_postfix(loss=f"{losses[-1]:.4g}", **{k: f"{v:.3g}" for k, v in stats.items()})
            if checkpoint is not None and main and ((step + 1) % checkpoint.every == 0 or step + 1 == steps):
                state.save(step + 1, order, losses)
    finally:
        distributed.clear_shard()
        bar.close()
        if log is not None:
            log.close()
    model.eval()
    if ema is not None:
        ema.copy_to([p for p in ema_model.parameters() if p.requires_grad])
        ema_model.eval()
    if state.restore_best() and log is not None:
        log.log.kept_step = state.best_step
    return losses


class _LossModule(nn.Module):
    """``model`` with the loss as its forward, so DistributedDataParallel can wrap a training
    stage whose loss calls methods other than ``model.forward`` (e.g. ``vae.loss``)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: dict[str, torch.Tensor], step: int):
        return self.loss_fn(batch, step)


class _TrainState:
    """Saves and restores everything :func:`fit` needs to continue a run bit-for-bit."""

    def __init__(self, model, optimizer, schedule, ema, generator, checkpoint: TrainCheckpoint | None, acting: nn.Module | None = None) -> None:
        self.model, self.optimizer, self.schedule, self.ema = model, optimizer, schedule, ema
        self.checkpoint = checkpoint
        self.generators = {"data": generator, **(checkpoint.generators if checkpoint else {})}
        self.saved_step: int | None = None
        # in-training evaluation: the module that acts, and its best-scoring weights so far
        self.acting = acting
        self.best: dict[str, torch.Tensor] | None = None
        self.best_score, self.best_step = -math.inf, 0
        self.writer: StageWriter | None = None
        self.log_rows: list[dict[str, float]] = []

    def offer_best(self, step: int, score: float) -> None:
        """Keep the acting weights if ``score`` is at least the best so far (later wins ties: more training)."""
        if score >= self.best_score:
            self.best_score, self.best_step = score, step
            self.best = {k: v.detach().clone() for k, v in self.acting.state_dict().items()}

    def restore_best(self) -> bool:
        """Load the best weights kept, if any; whether it did."""
        if self.best is None:
            return False
        self.acting.load_state_dict(self.best)
        return True

    def advice(self) -> str:
        where = f"the last good state (step {self.saved_step}) is kept in {self.checkpoint.path}; " if self.saved_step else ""
        return where + "lower the learning rate or check the data"

    def save(self, step: int, order: torch.Tensor, losses: list[float]) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict(keep_vars=False).items()}
        opt = self.optimizer.state_dict()
        for i, s in opt["state"].items():
            tensors.update({f"optim.{i}.{k}": torch.as_tensor(v) for k, v in s.items()})
        if self.ema is not None:
            ema = self.ema.state_dict()
            tensors.update({f"ema.{i}": p for i, p in enumerate(ema.pop("shadow_params"))})
        tensors.update({f"rng.{k}": g.get_state() for k, g in self.generators.items()})
        tensors["rng.torch_global"] = torch.get_rng_state()
        tensors["order"], tensors["losses"] = order.clone(), torch.tensor(losses, dtype=torch.float64)
        if self.best is not None:
            tensors.update({f"best.{k}": v for k, v in self.best.items()})
        meta = {
            "best": {"score": self.best_score, "step": self.best_step, "keys": sorted(self.best)} if self.best is not None else None,
            "log": self.writer.log.rows if self.writer is not None else None,
            "kind": "train_state",
            "run_id": self.checkpoint.run_id,
            "step": step,
            "optimizer": {"param_groups": opt["param_groups"], "state_keys": {str(i): sorted(s) for i, s in opt["state"].items()}},
            "schedule": self.schedule.state_dict(),
            "ema": ema if self.ema is not None else None,
        }
        save_checkpoint(self.checkpoint.path, _dedupe(tensors), meta)
        self.saved_step = step

    def load(self, device: torch.device) -> tuple[int, torch.Tensor, list[float]]:
        path = self.checkpoint.path
        tensors, meta = load_checkpoint(path, "cpu")
        if meta.get("kind") != "train_state":
            raise ValueError(f"{path} is not a training state written by lwd_gym.training.fit")
        if meta.get("run_id") != self.checkpoint.run_id:
            raise ValueError(
                f"{path} belongs to a different training run (other config, data or number of steps); "
                "use a new checkpoint_dir or delete it to start over"
            )
        try:
            model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
            self.model.load_state_dict({k: model_state[k] for k in self.model.state_dict()}, strict=True)
            opt = meta["optimizer"]
            self.optimizer.load_state_dict(
                {"param_groups": opt["param_groups"], "state": {int(i): {k: tensors[f"optim.{i}.{k}"] for k in keys} for i, keys in opt["state_keys"].items()}}
            )
            self.schedule.load_state_dict(meta["schedule"])
            if self.ema is not None:
                shadow = [tensors[f"ema.{i}"].to(device) for i in range(len(self.ema.shadow_params))]
                self.ema.load_state_dict({**meta["ema"], "shadow_params": shadow})
            for k, g in self.generators.items():
                g.set_state(tensors[f"rng.{k}"])
            torch.set_rng_state(tensors["rng.torch_global"])
            step, order, losses = int(meta["step"]), tensors["order"], tensors["losses"].tolist()
            best = meta.get("best")
            if best is not None and self.acting is not None:
                self.best = {k: tensors[f"best.{k}"].to(device) for k in best["keys"]}
                self.best_score, self.best_step = float(best["score"]), int(best["step"])
            self.log_rows = [dict(row) for row in (meta.get("log") or [])]
        except (KeyError, RuntimeError, ValueError) as err:
            raise ValueError(f"{path}: training state does not match this model ({err})") from err
        self.saved_step = step
        return step, order, losses


def _dedupe(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory (hypnettorch registers parameters twice in
    # its state_dict; the scheduler's step count may alias); clone the repeats.
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        v = v.detach().cpu()
        key = v.untyped_storage().data_ptr() if v.numel() else id(v)
        out[k] = v.clone() if key in seen else v
        seen.add(key)
    return out
