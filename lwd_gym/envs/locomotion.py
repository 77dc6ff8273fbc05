"""MuJoCo locomotion (HalfCheetah, Walker2d) with behaviour sources of three qualities (paper App. G.2).

The paper's mixed-behaviour experiment collects demonstrations of HalfCheetah from an *expert*,
a *medium* (a policy at about a third of the expert's return) and a *random* policy.  Here the
expert and medium are actors of one Stable-Baselines3 SAC run (``python -m
benchmarks.sac_experts`` trains them and exports each actor as a small safetensors file with
JSON metadata); the random policy draws uniform actions.  Collection needs neither SB3 nor
torch: :class:`SACActor` runs an exported actor's deterministic action in numpy.

Demonstration sources (``lwd-gym collect mujoco/halfcheetah-expert``, ``-medium``, ``-random``;
``mujoco/walker2d-*`` likewise) roll them in gymnasium's ``HalfCheetah-v5`` / ``Walker2d-v5``
wrapped with :class:`~lwd_gym.behaviour.FootContacts`, so every episode's infos hold its foot
contacts, and ``infos["behaviour_id"]`` (:data:`BEHAVIOURS`: 0 expert, 1 medium, 2 random).
Exported actors are looked up in :func:`experts_dir` (the package's ``lwd_gym/data/experts``, or
the folder named by the ``LWD_GYM_EXPERTS_DIR`` environment variable).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from lwd_gym.behaviour import FootContacts

#: Behaviour names in id order: ``infos["behaviour_id"]`` of a collected episode indexes this.
BEHAVIOURS: tuple[str, ...] = ("expert", "medium", "random")
#: Where exported actors ship: ``lwd_gym/data/experts`` (package data).
PACKAGE_EXPERTS = Path(__file__).resolve().parent.parent / "data" / "experts"
#: Environment variable naming another folder of exported actors (tests, one's own SAC runs).
EXPERTS_ENV_VAR = "LWD_GYM_EXPERTS_DIR"
#: The format tag written in an exported actor's metadata.
ACTOR_FORMAT = "lwd_gym.sac_actor.v1"
_ACTIVATIONS = {"relu": lambda x: np.maximum(x, 0), "tanh": np.tanh}


@dataclass(frozen=True)
class Locomotion:
    """One locomotion task: its gymnasium id, the foot geoms counted, and the info keys its env
    reports from ``step`` only (added as 0.0 at reset, so every info has the same keys)."""

    env_id: str
    feet: tuple[str, ...]
    step_only_info: tuple[str, ...]


LOCOMOTION: dict[str, Locomotion] = {
    "halfcheetah": Locomotion("HalfCheetah-v5", ("bfoot", "ffoot"), ("x_velocity", "reward_forward", "reward_ctrl")),
    "walker2d": Locomotion("Walker2d-v5", ("foot_geom", "foot_left_geom"), ("x_velocity", "reward_forward", "reward_ctrl", "reward_survive")),
}

INSTALL_HINT = "pip install 'lwd-gym[mujoco]'"


def make_locomotion_env(task: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` of ``task``'s env (``"halfcheetah"`` or ``"walker2d"``; ``kwargs`` go to
    ``make``) wrapped with :class:`~lwd_gym.behaviour.FootContacts` (foot contacts in every info,
    the same info keys at reset and step)."""
    if task not in LOCOMOTION:
        raise ValueError(f"unknown locomotion task {task!r}; known: {sorted(LOCOMOTION)}")
    spec = LOCOMOTION[task]
    try:
        env = gym.make(spec.env_id, **kwargs)
    except gym.error.DependencyNotInstalled as err:
        raise ImportError(f"{spec.env_id} needs MuJoCo: {INSTALL_HINT} ({err})") from err
    return FootContacts(env, spec.feet, reset_info={key: 0.0 for key in spec.step_only_info})


# ------------------------------------------------------------------------------------------
# Exported SAC actors
# ------------------------------------------------------------------------------------------


def experts_dir() -> Path:
    """The folder of exported actors: ``$LWD_GYM_EXPERTS_DIR`` when set, else the package's
    ``lwd_gym/data/experts`` (:data:`PACKAGE_EXPERTS`)."""
    override = os.environ.get(EXPERTS_ENV_VAR)
    return Path(override) if override else PACKAGE_EXPERTS


def actor_path(task: str, behaviour: str, directory: str | os.PathLike | None = None) -> Path:
    """Where the actor of ``behaviour`` (``"expert"``, ``"medium"``) of ``task`` is exported:
    ``<directory or experts_dir()>/<task>-<behaviour>.safetensors`` (metadata beside it, ``.json``)."""
    return Path(directory if directory is not None else experts_dir()) / f"{task}-{behaviour}.safetensors"


class SACActor:
    """The deterministic action of an exported SB3 SAC actor, in numpy (no torch, no SB3).

    SB3's SAC acts with ``tanh(mu(latent_pi(obs)))`` (its squashed Gaussian's mode), then rescales
    from ``[-1, 1]`` to the action space's ``[low, high]``; :meth:`__call__` does the same, in
    float32 as SB3 does, so it equals ``model.predict(obs, deterministic=True)`` to float tolerance.

    :param layers: ``[(W [out, in], b [out]), ...]``: ``latent_pi``'s linear layers, then ``mu``.
    :param activation: between hidden layers (``"relu"``, SB3's default, or ``"tanh"``).
    :param action_low, action_high: the action space's bounds.
    :param metadata: what the export recorded (behaviour, measured return, training steps, ...).
    """

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], activation: str, action_low: np.ndarray, action_high: np.ndarray,
                 metadata: dict[str, Any] | None = None) -> None:  # fmt: skip
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unsupported activation {activation!r}; supported: {sorted(_ACTIVATIONS)}")
        if not layers:
            raise ValueError("an actor needs at least one layer")
        for (w, _), (w_next, _) in zip(layers, layers[1:]):
            if w_next.shape[1] != w.shape[0]:
                raise ValueError(f"layer shapes do not chain: {w.shape} then {w_next.shape}")
        self.layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]
        self.activation = activation
        self.low, self.high = np.asarray(action_low, np.float32), np.asarray(action_high, np.float32)
        if self.low.shape != (self.action_dim,) or self.high.shape != (self.action_dim,):
            raise ValueError(f"action bounds must have shape ({self.action_dim},), got {self.low.shape} and {self.high.shape}")
        self.metadata = dict(metadata or {})

    @property
    def obs_dim(self) -> int:
        return self.layers[0][0].shape[1]

    @property
    def action_dim(self) -> int:
        return self.layers[-1][0].shape[0]

    @classmethod
    def load(cls, path: str | os.PathLike) -> SACActor:
        """An actor exported by :func:`export_sac_actor` (``path``: its ``.safetensors``; the
        ``.json`` metadata beside it)."""
        from safetensors.numpy import load_file

        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not path.exists() or not meta_path.exists():
            raise FileNotFoundError(f"no exported SAC actor at {path} (and {meta_path.name})")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != ACTOR_FORMAT:
            raise ValueError(f"{meta_path} is not an lwd_gym SAC actor (format {meta.get('format')!r}, expected {ACTOR_FORMAT!r})")
        tensors = load_file(str(path))
        n = len(meta["hidden"]) + 1
        layers = [(tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]) for i in range(n)]
        actor = cls(layers, meta["activation"], np.array(meta["action_low"]), np.array(meta["action_high"]), meta)
        if (actor.obs_dim, actor.action_dim) != (meta["obs_dim"], meta["action_dim"]):
            raise ValueError(f"{path}: weights are {actor.obs_dim} -> {actor.action_dim} but the metadata says {meta['obs_dim']} -> {meta['action_dim']}")
        return actor

    def save(self, path: str | os.PathLike) -> Path:
        """Write the actor as ``path`` (``.safetensors``: ``layers.<i>.weight`` / ``.bias``, float32)
        and its metadata beside it (``.json``: the architecture and spaces, then :attr:`metadata`),
        the files :meth:`load` reads."""
        from safetensors.numpy import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            raise ValueError(f"an actor file must end in .safetensors, got {path}")
        tensors = {}
        for i, (w, b) in enumerate(self.layers):
            tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"] = np.ascontiguousarray(w), np.ascontiguousarray(b)
        meta = {
            **self.metadata,
            "format": ACTOR_FORMAT,
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "hidden": [int(w.shape[0]) for w, _ in self.layers[:-1]],
            "activation": self.activation,
            "action_low": self.low.astype(np.float64).tolist(),
            "action_high": self.high.astype(np.float64).tolist(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path))
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=float) + "\n")
        return path

    def __call__(self, obs: Any) -> np.ndarray:
        """Actions ``[action_dim]`` (or ``[n, action_dim]`` for ``[n, obs_dim]`` observations)."""
        x = np.asarray(obs, dtype=np.float32)
        if x.shape[-1:] != (self.obs_dim,) or x.ndim > 2:
            raise ValueError(f"observation must have shape ({self.obs_dim},) or (n, {self.obs_dim}), got {x.shape}")
        act = _ACTIVATIONS[self.activation]
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.T + b
            if i < len(self.layers) - 1:
                x = act(x)
        squashed = np.tanh(x)
        return self.low + (np.float32(0.5) * (squashed + np.float32(1.0)) * (self.high - self.low))


def export_sac_actor(model: Any, path: str | os.PathLike, **metadata: Any) -> Path:
    """Write the actor of an SB3 ``SAC`` ``model`` as ``path`` (``.safetensors``: its linear
    layers, float32) and ``path.with_suffix(".json")`` (architecture, spaces, and ``metadata``,
    e.g. ``behaviour``, ``mean_return``, ``training_steps``), for :meth:`SACActor.load`.

    Only what the deterministic action uses is kept (``latent_pi`` and ``mu``; not ``log_std``,
    not the critics): ~75k parameters for 17 -> 256 -> 256 -> 6, about 300 kB.  Needs torch (not
    SB3 itself); refuses actors it cannot reproduce (gSDE, a features extractor other than
    flattening, an activation other than ReLU / tanh).
    """
    from torch import nn

    actor = model.policy.actor
    if getattr(actor, "use_sde", False) or not isinstance(actor.mu, nn.Linear):
        raise ValueError("only SAC actors without gSDE (use_sde=False) can be exported")
    if type(actor.features_extractor).__name__ != "FlattenExtractor":
        raise ValueError(f"only SAC actors with SB3's FlattenExtractor can be exported, got {type(actor.features_extractor).__name__}")
    linears = [m for m in actor.latent_pi if isinstance(m, nn.Linear)] + [actor.mu]
    others = {type(m).__name__ for m in actor.latent_pi if not isinstance(m, nn.Linear)}
    names = {"ReLU": "relu", "Tanh": "tanh"}
    if len(others) > 1 or (others and next(iter(others)) not in names):
        raise ValueError(f"unsupported activation(s) in the actor: {sorted(others)}")
    activation = names[next(iter(others))] if others else "relu"
    layers = [(m.weight.detach().float().cpu().numpy(), m.bias.detach().float().cpu().numpy()) for m in linears]
    space = model.action_space
    meta = {"algorithm": "SAC (stable-baselines3)", **metadata}
    return SACActor(layers, activation, space.low, space.high, meta).save(path)


# ------------------------------------------------------------------------------------------
# Experts and demonstration sources
# ------------------------------------------------------------------------------------------


class ActorExpert:
    """An exported actor as a ``collect`` expert (deterministic: ``reset`` draws nothing)."""

    def __init__(self, actor: SACActor, behaviour: str) -> None:
        self.actor, self.behaviour = actor, behaviour
        self.behaviour_id = BEHAVIOURS.index(behaviour)

    def reset(self, rng: np.random.Generator | None = None) -> None:
        pass

    def __call__(self, obs: Any) -> np.ndarray:
        return self.actor(obs)


class UniformExpert:
    """The ``random`` behaviour: actions uniform in the action space, from the ``reset`` rng."""

    behaviour, behaviour_id = "random", BEHAVIOURS.index("random")

    def __init__(self, action_space: gym.spaces.Box) -> None:
        self.space = action_space
        self._rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator | None = None) -> None:
        if rng is not None:
            self._rng = rng

    def __call__(self, obs: Any) -> np.ndarray:
        return self._rng.uniform(self.space.low, self.space.high).astype(self.space.dtype)


def make_behaviour_expert(env: gym.Env, task: str, behaviour: str, directory: str | os.PathLike | None = None) -> ActorExpert | UniformExpert:
    """The expert of ``behaviour`` for ``task`` in ``env``: uniform actions for ``"random"``, else
    the exported actor (:func:`actor_path`), with a clear error saying how to make it when missing."""
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r}; known: {BEHAVIOURS}")
    if behaviour == "random":
        return UniformExpert(env.action_space)
    path = actor_path(task, behaviour, directory)
    if not path.exists() or not path.with_suffix(".json").exists():
        flag = "" if task == "halfcheetah" else f" --env {task}"
        raise FileNotFoundError(
            f"the {task} {behaviour} actor is not exported ({path} missing): train it with `python -m benchmarks.sac_experts{flag}` "
            f"(SAC, about an hour of CPU; it writes {path.name} to lwd_gym/data/experts/), or point ${EXPERTS_ENV_VAR} at a folder holding it"
        )
    actor = SACActor.load(path)
    if (actor.obs_dim, actor.action_dim) != (env.observation_space.shape[0], env.action_space.shape[0]):
        raise ValueError(f"{path} maps {actor.obs_dim} -> {actor.action_dim} but the env has {env.observation_space.shape} -> {env.action_space.shape}")
    return ActorExpert(actor, behaviour)


def demo_sources() -> list:
    """``lwd-gym collect mujoco/<task>-<behaviour>`` for HalfCheetah and Walker2d, behaviours
    :data:`BEHAVIOURS`; each episode's ``infos["behaviour_id"]`` is its behaviour's index."""
    from lwd_gym.data.sources import DemoSource

    sources = []
    for task, spec in LOCOMOTION.items():
        for behaviour in BEHAVIOURS:
            policy = "uniform random actions" if behaviour == "random" else f"the SAC {behaviour} actor (benchmarks/sac_experts.py)"
            sources.append(
                DemoSource(
                    name=f"mujoco/{task}-{behaviour}",
                    make_env=lambda task=task: make_locomotion_env(task),
                    make_expert=lambda env, task=task, behaviour=behaviour: make_behaviour_expert(env, task, behaviour),
                    dataset_id=f"lwd/{task}/{behaviour}-v0",
                    episode_info=lambda expert: {"behaviour_id": expert.behaviour_id},
                    extra="mujoco",
                    has_success=False,
                    description=(
                        f"{spec.env_id}, {behaviour} behaviour: {policy} (infos['behaviour_id'] = {BEHAVIOURS.index(behaviour)}; "
                        f"ids {dict(enumerate(BEHAVIOURS))}); infos['foot_contact'] holds the feet {spec.feet}'s floor contacts."
                    ),
                )
            )
    return sources
