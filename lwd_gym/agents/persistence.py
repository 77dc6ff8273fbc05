"""How every agent is stored and shared: single-file checkpoints, pretrained directories, the
Hugging Face Hub, and SB3's ``get_parameters`` / ``set_parameters``.

* ``save(path)`` / ``load(path, env=None)``: one safetensors file with the JSON config in its
  header (:mod:`lwd_gym.checkpoint`), written atomically.
* ``save_pretrained(dir)`` / ``from_pretrained(dir_or_repo_id)`` / ``push_to_hub(repo_id)``:
  the directory shape of Hugging Face and LeRobot, ``config.json`` + ``model.safetensors`` + a
  ``README.md`` model card; a Hub repo id goes through ``huggingface_hub``.
* ``get_parameters()`` / ``set_parameters(params, exact_match=True)``: every network's tensors
  by module name, as in Stable-Baselines3.

Nothing here unpickles: weights are safetensors, everything else JSON.  :class:`Persistence`
is a mixin of :class:`~lwd_gym.agents.base.BaseAgent`; it uses the agent's ``config``, spaces,
normalisers, ``_modules``, ``_build`` and the ``_extra_state`` hooks.
"""
from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import gymnasium as gym
import torch
from minari.serialization import deserialize_space, serialize_space

from lwd_gym import distributed
from lwd_gym._version import __version__
from lwd_gym.checkpoint import (
    MODEL_CARD_NAME,
    atomic_write,
    load_checkpoint,
    load_module_tensors,
    load_pretrained_files,
    module_tensors,
    save_checkpoint,
    save_pretrained_files,
)
from lwd_gym.data.normalizer import Normalizer
from lwd_gym.evaluation import check_action_space
from lwd_gym.utils import get_device

SelfAgent = TypeVar("SelfAgent", bound="Persistence")


class Persistence:
    """Checkpoints, pretrained directories, the Hub and parameter access (mixed into ``BaseAgent``)."""

    #: what the last ``learn`` trained on and for how long (datasets, episodes, steps and final
    #: losses per stage); saved with the agent and shown in its model card
    training_record: dict[str, Any]

    # ------------------------------------------------------------------ hooks
    def _extra_state(self) -> dict[str, Any]:
        """JSON-able state beyond config, spaces and normalisers (e.g. latent statistics)."""
        return {}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        """Inverse of :meth:`_extra_state`."""

    # ------------------------------------------------------------------ the two parts of a saved agent
    def _saved_parts(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``(tensors, meta)``: every network tensor by ``<module>.<name>``, and the JSON the
        agent is rebuilt from."""
        if not self.is_trained:
            raise RuntimeError("nothing to save: the agent has not been trained")
        meta = {
            "agent": type(self).__name__,
            "lwd_gym_version": __version__,
            "config": self.config.to_dict(),
            "state_space": serialize_space(self.state_space),
            "action_space": serialize_space(self.action_space),
            "num_tasks": self.num_tasks,
            "normalizers": {"obs": self.obs_normalizer.to_dict(), "action": self.action_normalizer.to_dict()},
            "extra": self._extra_state(),
            "training": getattr(self, "training_record", {}),
        }
        tensors = {f"{name}.{k}": v for name, module in self._modules().items() for k, v in module_tensors(module).items()}
        return tensors, meta

    @classmethod
    def _from_parts(cls: type[SelfAgent], tensors: dict[str, torch.Tensor], meta: dict[str, Any], where: str, device: torch.device) -> SelfAgent:
        """The agent ``meta`` describes, with ``tensors`` as its weights (the saved class, which
        must be ``cls`` or a subclass)."""
        try:
            name = meta["agent"]
            klass = cls.agent_classes[name]  # BaseAgent's registry of every agent class
            if not issubclass(klass, cls):
                raise ValueError(f"{where} holds a {name}, not a {cls.__name__}")
            agent = klass(config=klass.config_class.from_dict(meta["config"]), device=device)
            agent._set_spaces(deserialize_space(meta["state_space"]), deserialize_space(meta["action_space"]), meta["num_tasks"])
            agent.obs_normalizer = Normalizer.from_dict(meta["normalizers"]["obs"])
            agent.action_normalizer = Normalizer.from_dict(meta["normalizers"]["action"])
            agent._load_extra_state(meta["extra"])
            agent.training_record = dict(meta.get("training", {}))  # absent before 0.1.0's pretrained directories
            agent._build()
        except (KeyError, TypeError) as err:
            raise ValueError(f"{where}: checkpoint metadata is incomplete or invalid ({err!r})") from err
        for module_name, module in agent._modules().items():
            prefix = module_name + "."
            load_module_tensors(module, {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, f"{where}: '{module_name}'")
            module.eval()
        return agent

    # ------------------------------------------------------------------ single file
    def save(self, path: str | os.PathLike) -> None:
        """Write a single-file checkpoint (safetensors weights + JSON config), atomically.

        Under ``torchrun`` only rank 0 writes (every rank holds the same weights).
        """
        tensors, meta = self._saved_parts()
        if distributed.is_main_process():
            save_checkpoint(path, tensors, meta)

    @classmethod
    def load(cls: type[SelfAgent], path: str | os.PathLike, env: gym.Env | gym.vector.VectorEnv | None = None, device: str | torch.device = "auto") -> SelfAgent:
        """Rebuild an agent saved with :meth:`save` (``BaseAgent.load`` picks the saved class).

        :param env: as in SB3, an env the agent is meant to act in: its observation and action
            spaces are checked against the agent's (:meth:`check_env`), a ``ValueError`` if they
            do not fit.
        """
        device = get_device(device)
        tensors, meta = load_checkpoint(path, device)
        agent = cls._from_parts(tensors, meta, str(path), device)
        if env is not None:
            agent.check_env(env)
        return agent

    def check_env(self, env: gym.Env | gym.vector.VectorEnv) -> None:
        """``ValueError`` unless ``env`` (or a vector env's sub-envs) observes what this agent
        reads and takes the actions it gives: Box spaces of the same shapes (action bounds may
        differ, as in :func:`lwd_gym.evaluate`: actions are clipped to the agent's space)."""
        obs_space = getattr(env, "single_observation_space", env.observation_space)
        act_space = getattr(env, "single_action_space", env.action_space)
        if not isinstance(obs_space, gym.spaces.Box) or obs_space.shape != self.observation_space.shape:
            hint = " (a multi-task agent also reads a one-hot task id: wrap the env with lwd_gym.wrappers.TaskId)" if self.num_tasks > 1 else ""
            raise ValueError(f"the env's observation space {obs_space} does not fit the agent's, a Box of shape {self.observation_space.shape}{hint}")
        check_action_space(self.action_space, act_space)

    # ------------------------------------------------------------------ pretrained directories and the Hub
    def save_pretrained(self, directory: str | os.PathLike, evaluation: Any = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a ``README.md`` model card into
        ``directory`` (created if needed); returns it.

        :param evaluation: results to show in the model card: an
            :class:`~lwd_gym.evaluation.EvalResult` (``lwd_gym.evaluate``'s) or a dict of
            numbers; the card otherwise says none are known.
        """
        tensors, meta = self._saved_parts()
        directory = Path(directory)
        if distributed.is_main_process():
            save_pretrained_files(directory, tensors, meta)
            card = model_card(meta, sum(t.numel() for t in tensors.values()), evaluation)
            atomic_write(directory / MODEL_CARD_NAME, lambda tmp: Path(tmp).write_text(card))
        return directory

    @classmethod
    def from_pretrained(
        cls: type[SelfAgent], name_or_path: str | os.PathLike, *, device: str | torch.device = "auto", revision: str | None = None, cache_dir: str | os.PathLike | None = None
    ) -> SelfAgent:
        """An agent from a directory written by :meth:`save_pretrained`, or from a Hugging Face
        Hub repo id (``"user/name"``, downloaded through ``huggingface_hub`` and cached).

        :raises OSError: a repo id that cannot be fetched (offline, no such repo) and is not cached.
        """
        device = get_device(device)
        path = Path(name_or_path)
        if not path.is_dir():
            path = Path(_download(str(name_or_path), revision, cache_dir))
        tensors, meta = load_pretrained_files(path, device)
        return cls._from_parts(tensors, meta, str(name_or_path), device)

    def push_to_hub(
        self, repo_id: str, *, private: bool | None = None, token: str | None = None, commit_message: str = "Upload lwd-gym agent", evaluation: Any = None
    ) -> str:
        """Upload the :meth:`save_pretrained` files to the Hub repo ``repo_id`` (created if
        missing) through ``huggingface_hub``; returns the commit URL."""
        from huggingface_hub import HfApi

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, evaluation=evaluation)  # before any network call: an untrained agent fails here
            api = HfApi(token=token)
            api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
        return str(getattr(info, "commit_url", info))

    # ------------------------------------------------------------------ SB3's parameter access
    def get_parameters(self) -> dict[str, dict[str, torch.Tensor]]:
        """Every network's parameters and buffers, by module name (e.g. ``"vae"``,
        ``"diffusion"``), as copies: changing them does not change the agent."""
        if not self.is_trained:
            raise RuntimeError("the agent has no parameters yet: train it (learn) or load one")
        return {name: {k: v.detach().clone() for k, v in module_tensors(m).items()} for name, m in self._modules().items()}

    def set_parameters(self, params: Mapping[str, Mapping[str, torch.Tensor]], exact_match: bool = True) -> None:
        """Load :meth:`get_parameters`-shaped ``params`` into the agent's networks.

        :param exact_match: every module and tensor must be given (and nothing else); with
            ``False``, the given ones are loaded and the rest kept.  Names and shapes are all
            checked before any is copied, so a refused call changes nothing.
        """
        if not self.is_trained:
            raise RuntimeError("set_parameters needs the agent's networks: train it (learn) or load one first")
        modules = self._modules()
        unknown = sorted(set(params) - set(modules))
        missing = sorted(set(modules) - set(params)) if exact_match else []
        if unknown or missing:
            raise ValueError(f"set_parameters: unknown modules {unknown}, missing modules {missing}; this agent has {sorted(modules)}")
        plan = []
        for name, given in params.items():
            targets = module_tensors(modules[name])
            extra = sorted(set(given) - set(targets))
            absent = sorted(set(targets) - set(given)) if exact_match else []
            if extra or absent:
                raise ValueError(f"set_parameters: module '{name}' has no tensors {extra[:5]} and was not given {absent[:5]}")
            for key, value in given.items():
                value = torch.as_tensor(value)
                if tuple(value.shape) != tuple(targets[key].shape):
                    raise ValueError(f"set_parameters: '{name}.{key}' has shape {tuple(value.shape)}, the agent's is {tuple(targets[key].shape)}")
                plan.append((targets[key], value))
        with torch.no_grad():
            for target, value in plan:
                target.copy_(value.to(device=target.device, dtype=target.dtype))
        self.reset()  # plans made with the old weights are stale


def _download(repo_id: str, revision: str | None, cache_dir: str | os.PathLike | None) -> str:
    """The local snapshot of a Hub repo's pretrained files, or an ``OSError`` saying why not."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
    except ImportError as err:  # a dependency of diffusers, so normally present
        raise ImportError("loading from the Hugging Face Hub needs huggingface_hub: pip install huggingface_hub") from err
    try:
        return snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=["config.json", "model.safetensors", "README.md"])
    except HFValidationError as err:
        raise OSError(f"{repo_id!r} is neither a local directory nor a Hub repo id ('user/name')") from err
    except LocalEntryNotFoundError as err:
        raise OSError(f"could not reach the Hugging Face Hub to fetch {repo_id!r}, and it is not in the local cache (offline?); pass a local directory written by save_pretrained") from err
    except HfHubHTTPError as err:
        raise OSError(f"the Hugging Face Hub refused {repo_id!r} ({err.__class__.__name__}: no such repo or revision, or it is private)") from err


def model_card(meta: dict[str, Any], num_parameters: int, evaluation: Any = None) -> str:
    """A short Hugging Face model card (YAML front matter + markdown) for a saved agent."""
    agent, config, training = meta["agent"], meta["config"], meta.get("training") or {}
    state_shape = tuple(deserialize_space(meta["state_space"]).shape)
    tasks = f" followed by a one-hot id of {meta['num_tasks']} tasks" if meta["num_tasks"] > 1 else ""
    lines = [
        "---", "library_name: lwd-gym", "tags:", "- lwd-gym", "- robotics", "- imitation-learning", f"- {agent}", "---", "",
        f"# {agent} (lwd-gym {meta['lwd_gym_version']})", "",
        f"An lwd-gym `{agent}` with {num_parameters:,} parameters; it observes states of shape {state_shape}{tasks}.", "",
        "```python", "from lwd_gym import BaseAgent", "", 'agent = BaseAgent.from_pretrained("<this directory or repo id>")',
        "action, _ = agent.predict(observation, episode_start=episode_start)", "```", "",
        "## Training", "",
    ]  # fmt: skip
    if training:
        datasets = training.get("datasets") or []
        lines.append(f"- data: {', '.join(f'`{d}`' for d in datasets) if datasets else 'unnamed datasets'}"
                     f" ({training.get('train_episodes', '?')} training / {training.get('validation_episodes', 0)} validation episodes)")  # fmt: skip
        for stage, s in training.get("stages", {}).items():
            val = s.get("last_val_loss")
            lines.append(f"- stage `{stage}`: {s.get('steps', '?')} gradient steps, final training loss {_num(s.get('last_loss'))}"
                         + (f", validation loss {_num(val)}" if val is not None else ""))  # fmt: skip
    else:
        lines.append("- not recorded (saved by an lwd-gym before training records existed)")
    lines += ["", "## Evaluation", ""]
    results = evaluation.to_dict() if hasattr(evaluation, "to_dict") else evaluation
    if results:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_num(v)} |" for k, v in results.items() if isinstance(v, (int, float, str))]
    else:
        lines.append("No evaluation results were given when this agent was saved (`save_pretrained(dir, evaluation=lwd_gym.evaluate(...))`).")
    lines += ["", "## Config", "", "| field | value |", "|---|---|"] + [f"| `{k}` | `{v}` |" for k, v in config.items()]
    return "\n".join(lines) + "\n"


def _num(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)
