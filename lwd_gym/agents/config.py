"""Every agent's hyperparameters, each declared once, as validated dataclasses.

One config class per agent, in a hierarchy that mirrors what the agents share::

    AgentConfig                    action_horizon, seed
    ├── RandomConfig
    └── TrainedConfig              batch_size
        ├── MLPConfig              hidden, bc_lr, bc_epochs
        └── DiffusionConfig        denoiser, denoiser_size, scheduler, num_inference_steps, diffusion_lr, ...
            ├── DPConfig           prediction_horizon, n_obs_steps
            └── LatentDiffusionConfig   snippet_length, latent_dim, kl_coef, condition_on, vae_lr, ...
                ├── LWDConfig      policy_hidden, hypernet_size, world model
                └── LDPConfig      decoder_hidden

A config validates every field in ``__post_init__``, so a bad value fails at construction with
a ``ValueError`` naming the field, before any training time is spent.  Configs are frozen:
``config.replace(field=value)`` gives a new, validated one.  They round-trip through the JSON of
a checkpoint (:meth:`AgentConfig.to_dict` / :meth:`AgentConfig.from_dict`), and names used
before the configs existed (e.g. ``diffusion_size``, DP's ``lr``) are still read, from old
checkpoints silently and from keyword arguments with a ``FutureWarning``.

One naming scheme across agents: a training stage ``s`` (``STAGES``: LWD/LDP ``vae`` then
``diffusion``, DP ``diffusion``, MLP ``bc``) has its learning rate ``s_lr``, its default budget
``s_epochs`` and its ``learn(s_steps=...)`` override; ``denoiser_size`` is the size preset of
every denoiser.  Each field's documentation is its ``doc`` metadata (:meth:`AgentConfig.describe`).
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from lwd_gym.nn.hypernet import HYPERNET_PRESETS
from lwd_gym.validation import choice, integer, positive_float, positive_int, widths
from lwd_gym.validation import denoiser as check_denoiser
from lwd_gym.validation import sampler as check_sampler

SelfConfig = TypeVar("SelfConfig", bound="AgentConfig")

#: what a latent diffusion can be conditioned on (``condition_on``)
CONDITIONS = ("auto", "obs", "task", "obs+task", "none")
#: which windows the VAE trains on (``vae_windows``): one starting at every step, or only those where plans start
VAE_WINDOWS = ("all", "plan_starts")


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside lwd_gym, so a warning names the user's line
    (``warnings.warn(skip_file_prefixes=...)`` needs Python 3.12)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def _doc(default: Any, doc: str) -> Any:
    """A field with its documentation (read by :meth:`AgentConfig.describe` and the CLI)."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """What every agent has."""

    action_horizon: int = _doc(1, "steps an environment follows one plan before re-planning (LWD: one generated policy)")
    seed: int = _doc(0, "seeds network initialisation, training data order and sampling noise")

    #: training stages in order; stage ``s`` has fields ``s_lr`` and ``s_epochs`` and the ``learn(s_steps=)`` budget
    STAGES: ClassVar[tuple[str, ...]] = ()
    #: fields a *trained* agent may change (acting-time settings); the others are fixed by training
    ACTING_FIELDS: ClassVar[frozenset[str]] = frozenset({"action_horizon"})
    #: names used before the configs existed -> their field
    RENAMED: ClassVar[Mapping[str, str]] = {}

    def __post_init__(self) -> None:
        self._set("action_horizon", positive_int("action_horizon", self.action_horizon))
        self._set("seed", integer("seed", self.seed))

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # the normalised value of a frozen field

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def _canonical(cls, values: Mapping[str, Any], *, warn: bool) -> dict[str, Any]:
        """``values`` with old names mapped to their fields; an unknown name is a ``TypeError``
        listing the fields."""
        out: dict[str, Any] = {}
        for key, value in values.items():
            name = cls.RENAMED.get(key, key)
            if name != key and warn:
                warnings.warn(f"{cls.__name__}: '{key}' is now called '{name}'; the old name will be removed", FutureWarning, stacklevel=_caller_level())
            if name in out:
                raise TypeError(f"{cls.__name__}: '{name}' is given twice (once as '{key}')")
            out[name] = value
        unknown = sorted(set(out) - set(cls.field_names()))
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {unknown}; its fields are: {', '.join(cls.field_names())}")
        return out

    @classmethod
    def from_dict(cls: type[SelfConfig], values: Mapping[str, Any]) -> SelfConfig:
        """The config a checkpoint's JSON (:meth:`to_dict`) describes; old names are accepted."""
        return cls(**cls._canonical(values, warn=False))

    @classmethod
    def build(cls: type[SelfConfig], config: SelfConfig | Mapping[str, Any] | None = None, **overrides: Any) -> SelfConfig:
        """An agent's config from what its constructor got: a config of this class (or a
        mapping of fields), then keyword ``overrides`` on top."""
        if config is None:
            return cls(**cls._canonical(overrides, warn=True))
        if isinstance(config, Mapping):
            return cls(**cls._canonical({**config, **overrides}, warn=True))
        if type(config) is not cls:
            raise TypeError(f"expected a {cls.__name__} (or a dict of its fields), got {type(config).__name__}")
        return config.replace(**overrides) if overrides else config

    def replace(self: SelfConfig, **changes: Any) -> SelfConfig:
        """A copy with ``changes`` applied, validated again."""
        return type(self)(**{**self._values(), **type(self)._canonical(changes, warn=True)})

    def _values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._values().items()}

    @classmethod
    def describe(cls) -> dict[str, str]:
        """Each field's documentation (a subclass that only changes a default inherits it)."""
        docs: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for f in getattr(klass, "__dataclass_fields__", {}).values():
                if "doc" in f.metadata:
                    docs[f.name] = f.metadata["doc"]
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        return {name: f"{docs.get(name, '')} (default {defaults[name]!r})" for name in cls.field_names()}


@dataclass(frozen=True, kw_only=True)
class RandomConfig(AgentConfig):
    """:class:`~lwd_gym.agents.RandomAgent`: uniform actions (``action_horizon``: steps one draw is repeated)."""


@dataclass(frozen=True, kw_only=True)
class TrainedConfig(AgentConfig):
    """What every trained agent has."""

    batch_size: int = _doc(256, "mini-batch size of every training stage")

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("batch_size", positive_int("batch_size", self.batch_size))
        for stage in self.STAGES:
            self._set(f"{stage}_lr", positive_float(f"{stage}_lr", getattr(self, f"{stage}_lr")))
            self._set(f"{stage}_epochs", positive_int(f"{stage}_epochs", getattr(self, f"{stage}_epochs")))


@dataclass(frozen=True, kw_only=True)
class MLPConfig(TrainedConfig):
    """:class:`~lwd_gym.agents.MLPAgent`: behaviour cloning (MSE).  A plan is one action, so
    ``action_horizon`` only matters for API symmetry."""

    hidden: tuple[int, ...] = _doc((256, 256), "hidden layer widths")
    bc_lr: float = _doc(1e-3, "learning rate of behaviour cloning")
    bc_epochs: int = _doc(100, "passes over all (state, action) pairs unless learn() gets bc_steps (or steps)")

    STAGES: ClassVar[tuple[str, ...]] = ("bc",)
    RENAMED: ClassVar[Mapping[str, str]] = {"lr": "bc_lr", "epochs": "bc_epochs"}

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("hidden", tuple(widths("hidden", self.hidden)))


@dataclass(frozen=True, kw_only=True)
class DiffusionConfig(TrainedConfig):
    """What every agent that plans with a diffusion model has (DP, and LWD / LDP over latents)."""

    pad_short_episodes: bool = _doc(False, "train on demonstrations shorter than a window too, end-padded with their last step")
    denoiser: str = _doc("unet", "'unet' (Diffusion Policy's 1-D conditional UNet, FiLM) or 'transformer' (Diffusion Policy's transformer)")
    denoiser_size: str = _doc("s", "denoiser preset: UNet 'xs'|'s'|'m'|'l'|'xl' (the paper's Table 3), transformer 'xs'|'s'|'m'")
    num_inference_steps: int = _doc(10, "denoising steps per plan")
    scheduler: str = _doc("ddim", "sampler: 'ddim', 'dpmsolver++' or 'ddpm'")
    diffusion_lr: float = _doc(1e-4, "learning rate of the denoiser (AdamW, cosine schedule, 500 warm-up steps, EMA weights)")
    diffusion_epochs: int = _doc(100, "passes over the denoiser's rows unless learn() gets diffusion_steps (or steps)")

    STAGES: ClassVar[tuple[str, ...]] = ("diffusion",)
    ACTING_FIELDS: ClassVar[frozenset[str]] = frozenset({"action_horizon", "num_inference_steps", "scheduler"})
    #: the field holding the length of the sequence the denoiser runs over (set by each agent's config)
    DENOISED_LENGTH: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if not self.DENOISED_LENGTH:
            raise TypeError(f"{type(self).__name__} is shared by the diffusion agents' configs: use DPConfig, LWDConfig or LDPConfig")
        super().__post_init__()
        self._set("pad_short_episodes", bool(self.pad_short_episodes))
        self._set("num_inference_steps", check_sampler(self.scheduler, self.num_inference_steps))
        check_denoiser(self.denoiser, self.denoiser_size, "denoiser_size", getattr(self, self.DENOISED_LENGTH), self.DENOISED_LENGTH)


@dataclass(frozen=True, kw_only=True)
class DPConfig(DiffusionConfig):
    """:class:`~lwd_gym.agents.DPAgent`: Diffusion Policy (Chi et al., 2023)."""

    action_horizon: int = 8  # Diffusion Policy's n_action_steps; at most prediction_horizon - n_obs_steps + 1
    prediction_horizon: int = _doc(16, "actions denoised per plan (Diffusion Policy's horizon); a multiple of 4 for the UNet")
    n_obs_steps: int = _doc(2, "observations a plan is conditioned on (an episode's first repeats)")
    num_inference_steps: int = 100  # Diffusion Policy: DDPM, 100 steps
    scheduler: str = "ddpm"

    RENAMED: ClassVar[Mapping[str, str]] = {"size": "denoiser_size", "lr": "diffusion_lr", "epochs": "diffusion_epochs"}
    DENOISED_LENGTH: ClassVar[str] = "prediction_horizon"

    def __post_init__(self) -> None:
        self._set("prediction_horizon", positive_int("prediction_horizon", self.prediction_horizon))
        self._set("n_obs_steps", positive_int("n_obs_steps", self.n_obs_steps))
        if self.prediction_horizon < self.n_obs_steps:
            raise ValueError(f"need 1 <= n_obs_steps <= prediction_horizon, got n_obs_steps={self.n_obs_steps}, prediction_horizon={self.prediction_horizon}")
        super().__post_init__()
        limit = self.prediction_horizon - self.n_obs_steps + 1  # the first n_obs_steps - 1 predicted actions are past steps
        if self.action_horizon > limit:
            raise ValueError(f"action_horizon={self.action_horizon} exceeds what a DP plan can execute (prediction_horizon - n_obs_steps + 1 = {limit})")



@dataclass(frozen=True, kw_only=True)
class LatentDiffusionConfig(DiffusionConfig):
    """What LWD and LDP share: a snippet VAE, then a conditional diffusion over its latents."""

    action_horizon: int = 32
    # Not DP's 1e-4: measured with only action_horizon=16 on benchmarks.defaults' task (its default
    # budget, 5,300 steps per stage), LWD reached 21 % with diffusion_lr 1e-4, vae_lr 3e-4 and
    # hypernet "s" (held-out denoising loss 0.33 at the end) and 95 % with 1e-3, 1e-3 and "xs" (0.15)
    # (benchmarks/README.md, "Defaults as a new user meets them").
    diffusion_lr: float = 1e-3
    snippet_length: int | None = _doc(None, "H, steps per VAE training snippet (None: action_horizon, fixed at construction)")
    vae_windows: str = _doc(
        "all",
        "the VAE's snippets: 'all' (a window starting at every step) or 'plan_starts' (only windows starting where plans "
        "start, steps 0, H_a, 2 H_a, ...: with one policy per episode, whole episodes, as the paper encodes Metaworld's)",
    )
    latent_dim: int = _doc(256, "size of the latent z")
    latent_length: int = _doc(16, "the latent is laid out as [latent_dim // latent_length, latent_length] for the denoiser")
    kl_coef: float = _doc(1e-8, "beta_kl, weight of the latent KL term (the paper: 1e-10 ... 1e-6)")
    condition_on: str = _doc(
        "auto",
        "what the latent diffusion is conditioned on: 'obs' (the state at the re-sample), 'task' (one-hot id), 'obs+task' or "
        "'none'; 'auto' follows the data: 'obs' for one dataset, 'obs+task' for several (one per task), as DP and the MLP read both",
    )
    vae_lr: float = _doc(1e-3, "learning rate of the VAE (AdamW, cosine schedule)")
    vae_epochs: int = _doc(100, "passes over the VAE's snippets unless learn() gets vae_steps (or steps)")

    STAGES: ClassVar[tuple[str, ...]] = ("vae", "diffusion")
    RENAMED: ClassVar[Mapping[str, str]] = {"diffusion_size": "denoiser_size"}
    DENOISED_LENGTH: ClassVar[str] = "latent_length"

    def __post_init__(self) -> None:
        choice("condition_on", self.condition_on, CONDITIONS)
        choice("vae_windows", self.vae_windows, VAE_WINDOWS)
        self._set("latent_dim", positive_int("latent_dim", self.latent_dim))
        self._set("latent_length", positive_int("latent_length", self.latent_length))
        if self.latent_dim % self.latent_length:
            raise ValueError(f"latent_dim={self.latent_dim} must be divisible by latent_length={self.latent_length}")
        if isinstance(self.kl_coef, bool) or not isinstance(self.kl_coef, (int, float)) or not 0 <= self.kl_coef < 1:
            raise ValueError(f"kl_coef must be in [0, 1), got {self.kl_coef!r}")
        self._set("kl_coef", float(self.kl_coef))
        super().__post_init__()
        # None (not 0) means "as long as action_horizon", resolved once so a later change of
        # action_horizon does not change the snippets a trained VAE expects.
        self._set("snippet_length", self.action_horizon if self.snippet_length is None else positive_int("snippet_length", self.snippet_length))



@dataclass(frozen=True, kw_only=True)
class LWDConfig(LatentDiffusionConfig):
    """:class:`~lwd_gym.agents.LWDAgent`: Latent Weight Diffusion.  ``action_horizon`` may exceed
    the episode length (one generated policy per episode)."""

    policy_hidden: tuple[int, ...] = _doc((256, 256), "hidden widths of the generated policy MLP")
    hypernet_size: str | tuple[int, ...] = _doc(
        "xs",
        "hypernetwork preset 'xs'|'s'|'m'|'l' or a list of hidden widths ('xs' by default: half the VAE step of 's', and "
        "what reached 94 % on Metaworld-10 and 95 % on benchmarks.defaults' task)",
    )
    world_model: bool = _doc(False, "also train a world model whose rollout loss shapes the VAE (acting is unchanged)")
    world_model_hidden: tuple[int, ...] = _doc((1024, 1024), "hidden widths of the world model MLP")
    world_model_history: int = _doc(1, "(state, action) pairs the world model predicts from")
    world_model_warmup_epochs: int = _doc(10, "VAE epochs without the rollout loss, so the world model is fitted before the VAE trains through it")
    rollout_coef: float = _doc(1.0, "weight of the world model's rollout loss after the warm-up")

    def __post_init__(self) -> None:
        self._set("world_model_hidden", tuple(widths("world_model_hidden", self.world_model_hidden)))
        self._set("world_model_history", positive_int("world_model_history", self.world_model_history))
        self._set("world_model_warmup_epochs", integer("world_model_warmup_epochs", self.world_model_warmup_epochs, minimum=0))
        self._set("policy_hidden", tuple(widths("policy_hidden", self.policy_hidden)))
        if isinstance(self.hypernet_size, str):
            choice("hypernet_size", self.hypernet_size, sorted(HYPERNET_PRESETS))
        else:
            self._set("hypernet_size", tuple(widths("hypernet_size", self.hypernet_size)))
        rc = self.rollout_coef
        if isinstance(rc, bool) or not isinstance(rc, (int, float)) or not (math.isfinite(rc) and rc >= 0):
            raise ValueError(f"rollout_coef must be a finite number >= 0, got {rc}")
        self._set("rollout_coef", float(rc))
        self._set("world_model", bool(self.world_model))
        super().__post_init__()
        if self.world_model and self.world_model_history >= self.snippet_length:
            raise ValueError(f"world_model_history={self.world_model_history} leaves no transition in snippets of {self.snippet_length} steps")


@dataclass(frozen=True, kw_only=True)
class LDPConfig(LatentDiffusionConfig):
    """:class:`~lwd_gym.agents.LDPAgent`: latent diffusion over action chunks, executed open-loop."""

    action_horizon: int = 8  # at most snippet_length: a chunk holds snippet_length actions
    decoder_hidden: tuple[int, ...] = _doc((256, 256), "hidden widths of the MLP decoder z -> action chunk")

    def __post_init__(self) -> None:
        self._set("decoder_hidden", tuple(widths("decoder_hidden", self.decoder_hidden)))
        super().__post_init__()
        if self.action_horizon > self.snippet_length:
            raise ValueError(f"action_horizon={self.action_horizon} exceeds what an LDP plan can execute (snippet_length = {self.snippet_length})")


__all__ = [
    "AgentConfig", "DPConfig", "DiffusionConfig", "LDPConfig", "LWDConfig", "LatentDiffusionConfig", "MLPConfig",
    "RandomConfig", "TrainedConfig", "CONDITIONS", "VAE_WINDOWS",
]  # fmt: skip
