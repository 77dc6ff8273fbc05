"""Export one generated LWD policy as a standalone artefact a robot runs without torch.

``export_policy`` samples a policy exactly as :meth:`LWDAgent.predict` would at an episode
start and writes its MLP weights and normalisers to a ``.npz`` of plain float32 arrays.
:class:`NumpyPolicy` runs it with numpy only; its source, :data:`RUNNER_SOURCE`, is what
``write_runner=True`` ships as ``numpy_policy.py``, so the shipped runner is the tested one.

:func:`write_onnx_policy` writes the same arrays (:func:`policy_arrays`) as an ONNX model with the
normalisers and the action clipping in the graph (``LWDAgent.export_onnx``,
``MLPAgent.export_onnx``); it needs the ``onnx`` extra (``pip install "lwd-gym[onnx]"``).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lwd_gym._version import __version__
from lwd_gym.checkpoint import atomic_write

if TYPE_CHECKING:  # onnx is an optional extra, imported when a model is built
    import onnx

RUNNER_SOURCE = '''"""Run a policy exported by lwd_gym's export_policy; needs numpy only.

    policy = NumpyPolicy.load("policy.npz"); action = policy(observation)
"""
import numpy as np


class NumpyPolicy:
    """Normalise state -> ReLU MLP -> unnormalise -> clip; obs [obs_dim] or [n, obs_dim]."""

    def __init__(self, arrays):
        self.layers = [(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(sum(k.startswith("W") for k in arrays))]
        self.obs_mean, self.obs_std = arrays["obs_mean"], arrays["obs_std"]
        self.act_mean, self.act_std = arrays["act_mean"], arrays["act_std"]
        self.act_low, self.act_high = arrays["act_low"], arrays["act_high"]
        self.state_dim, self.obs_dim = int(arrays["state_dim"]), int(arrays["obs_dim"])
        self.task = arrays["task"]  # the one-hot task id the policy was sampled for (empty: single task)

    @classmethod
    def load(cls, path):
        with np.load(path, allow_pickle=False) as f:
            return cls({k: f[k] for k in f.files})

    def __call__(self, obs):
        x = np.asarray(obs, dtype=np.float32)
        if x.ndim not in (1, 2) or x.shape[-1] != self.obs_dim or not np.isfinite(x).all():
            raise ValueError(f"expected finite observation(s) of shape ({self.obs_dim},) or (n, {self.obs_dim}), got {x.shape}")
        if not (x[..., self.state_dim :] == self.task).all():
            raise ValueError(f"this policy was exported for task one-hot {self.task.tolist()}, got {x[..., self.state_dim :].tolist()}")
        h = (x[..., : self.state_dim] - self.obs_mean) / self.obs_std  # the task is not an input: it chose the policy
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            h = np.maximum(h, 0) if i < len(self.layers) - 1 else h
        return np.clip(h * self.act_std + self.act_mean, self.act_low, self.act_high)
'''
# The tested class is compiled from the very text that is shipped.
exec(compile(RUNNER_SOURCE, "numpy_policy.py", "exec"), globals())
NumpyPolicy: type  # defined by the exec above


def _savez(filename: str, arrays: dict[str, np.ndarray]) -> None:
    with open(filename, "wb") as f:  # a file object: np.savez would append ".npz" to a name
        np.savez(f, **arrays)


def export_policy(
    agent: Any,
    path: str | os.PathLike,
    observation: np.ndarray,
    *,
    deterministic: bool = True,
    seed: int | None = None,
    write_runner: bool = False,
) -> Path:
    """Sample one policy of ``agent`` for a single ``observation`` and write it to ``path`` (``.npz``).

    The policy is the one ``agent.predict(observation, episode_start=[True], deterministic=...)``
    would follow in environment 0 (after ``agent.seed_envs([0], [seed], num_envs=1)`` when ``seed``
    is given); the agent's own plans and noise are untouched.  Stochastic sampling without ``seed``
    draws fresh noise.  ``.npz`` is appended to ``path`` if missing; returns the path written.
    ``write_runner`` also writes :data:`RUNNER_SOURCE` as ``numpy_policy.py`` beside it.
    """
    arrays = sampled_policy_arrays(agent, observation, deterministic=deterministic, seed=seed)
    path = _with_suffix(path, ".npz")
    atomic_write(path, lambda tmp: _savez(tmp, arrays))
    if write_runner:
        atomic_write(path.parent / "numpy_policy.py", lambda tmp: Path(tmp).write_text(RUNNER_SOURCE))
    return path


def _with_suffix(path: str | os.PathLike, suffix: str) -> Path:
    path = Path(path)
    return path if path.suffix == suffix else path.with_name(path.name + suffix)


def policy_arrays(
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    obs_norm: tuple[np.ndarray, np.ndarray],
    act_norm: tuple[np.ndarray, np.ndarray],
    act_bounds: tuple[np.ndarray, np.ndarray],
    obs_dim: int,
    state_dim: int | None = None,
    task: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The exported arrays (the ``.npz`` layout :class:`NumpyPolicy` reads) of a ReLU MLP.

    :param layers: ``[(W [out, in], b [out]), ...]`` mapping normalised inputs to normalised actions.
    :param obs_norm: ``(mean, std)`` of the MLP's inputs, the first ``state_dim`` observation entries.
    :param act_norm: ``(mean, std)`` of the actions; ``act_bounds``: ``(low, high)``, the clip.
    :param state_dim: how many leading observation entries the MLP reads (default: all).
    :param task: the one-hot task id the policy was sampled for, the observation's last
        ``obs_dim - state_dim`` entries (empty: the MLP reads every entry).
    """
    state_dim = obs_dim if state_dim is None else state_dim
    f32 = lambda x: np.asarray(x, dtype=np.float32)  # noqa: E731
    arrays: dict[str, np.ndarray] = {}
    for i, (w, b) in enumerate(layers):
        arrays[f"W{i}"], arrays[f"b{i}"] = f32(w), f32(b)
    arrays |= {
        "obs_mean": f32(obs_norm[0]), "obs_std": f32(obs_norm[1]),
        "act_mean": f32(act_norm[0]), "act_std": f32(act_norm[1]),
        "act_low": f32(act_bounds[0]), "act_high": f32(act_bounds[1]),
        "state_dim": np.array(state_dim), "obs_dim": np.array(obs_dim), "task": f32(np.zeros(0) if task is None else task),
    }  # fmt: skip
    if arrays["task"].shape != (obs_dim - state_dim,):
        raise ValueError(f"task has {arrays['task'].size} entries; the observation has {obs_dim - state_dim} after the state")
    return arrays


def sampled_policy_arrays(agent: Any, observation: np.ndarray, *, deterministic: bool = True, seed: int | None = None) -> dict[str, np.ndarray]:
    """:func:`policy_arrays` of the policy an LWD ``agent`` samples for ``observation`` (see
    :func:`export_policy` for which one); the observation's task id is fixed with it."""
    sample = getattr(agent, "sample_policy_layers", None)  # duck-typed: this module never imports the agents
    if sample is None:
        raise TypeError(f"export_policy needs an LWDAgent, got {type(agent).__name__}")
    obs = np.asarray(observation)
    layers = sample(obs, deterministic=deterministic, seed=seed)
    state_dim = agent.state_space.shape[0]
    return policy_arrays(
        layers,
        obs_norm=(agent.obs_normalizer.mean, agent.obs_normalizer.std),
        act_norm=(agent.action_normalizer.mean, agent.action_normalizer.std),
        act_bounds=(agent.action_space.low, agent.action_space.high),
        obs_dim=obs.shape[0],
        state_dim=state_dim,
        task=obs[state_dim:],
    )


# ---------------------------------------------------------------------------------------- ONNX
#: Opset 17 / IR 8 (onnx 1.12, onnxruntime 1.12 and later) has every operator the graph needs
#: (Gemm, Relu, Max/Min with broadcasting, ReduceMin with an ``axes`` attribute, Where); a newer
#: default would only narrow the runtimes that load the file.
ONNX_OPSET = 17
ONNX_IR_VERSION = 8
ONNX_INPUT, ONNX_OUTPUT = "observation", "action"


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as err:
        raise ImportError('ONNX export needs the onnx package: pip install "lwd-gym[onnx]"') from err
    return onnx


def onnx_policy_model(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> onnx.ModelProto:
    """An ``onnx.ModelProto`` computing what :class:`NumpyPolicy` computes from ``arrays``
    (:func:`policy_arrays`): raw observations ``[n, obs_dim]`` float32 in (``n`` dynamic), raw
    actions ``[n, action_dim]`` float32 out, ``clip(unnormalise(MLP(normalise(state))))``.

    Built node by node with onnx's helper API rather than ``torch.onnx.export``: torch 2.13's
    default (dynamo) exporter needs onnxscript, takes seconds per export and moves weights into
    a side ``.onnx.data`` file by default, and its TorchScript exporter is deprecated; a graph
    of ten standard operators needs only ``onnx``.  The observation mean is one ``Sub``;
    ``1 / std`` is folded into the first layer's weights and the action normaliser into the
    last layer's.  (Folding the mean into the bias too, as ``HostMLP`` does, would make the
    first layer sum large terms that cancel in float32 when an entry's ``|mean| >> std``.)

    An ONNX graph cannot raise: where :class:`NumpyPolicy` refuses an observation whose task
    one-hot is not the one the policy was sampled for, this graph returns NaN actions for those
    rows.  Inputs are not otherwise checked (NaN in, NaN or a bound out, as the runtime does).
    ``metadata`` is stored as the model's ``metadata_props`` (with the task, ``state_dim``, ``obs_dim``).
    """
    onnx_ = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    state_dim, obs_dim = int(arrays["state_dim"]), int(arrays["obs_dim"])
    task = np.asarray(arrays["task"], np.float32)
    f64 = lambda key: np.asarray(arrays[key], np.float64)  # noqa: E731  (fold in float64, store float32)
    layers = [(f64(f"W{i}"), f64(f"b{i}")) for i in range(sum(k.startswith("W") for k in arrays))]
    w, b = layers[0]
    layers[0] = (w / f64("obs_std"), b)  # W ((x - m) / s) + b == (W / s) (x - m) + b
    w, b = layers[-1]
    layers[-1] = (w * f64("act_std")[:, None], b * f64("act_std") + f64("act_mean"))  # (W h + b) S + M
    action_dim = layers[-1][1].shape[0]

    initializers: list[Any] = []
    nodes: list[Any] = []

    def constant(name: str, value: np.ndarray, dtype: type = np.float32) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def columns(start: int, stop: int, name: str) -> str:
        bounds = [constant(f"{name}_{k}", np.array([v]), np.int64) for k, v in (("start", start), ("stop", stop), ("axis", 1))]
        return node("Slice", [ONNX_INPUT, *bounds], name)

    h = columns(0, state_dim, "state") if state_dim < obs_dim else ONNX_INPUT
    h = node("Sub", [h, constant("obs_mean", arrays["obs_mean"])], "centred")
    for i, (w, b) in enumerate(layers):
        h = node("Gemm", [h, constant(f"W{i}", w), constant(f"b{i}", b)], f"linear{i}", transB=1)  # h W^T + b
        if i < len(layers) - 1:
            h = node("Relu", [h], f"relu{i}")
    # predict's own order: np.minimum(np.maximum(action, low), high), per action dimension.
    h = node("Max", [h, constant("act_low", arrays["act_low"])], "above_low")
    h = node("Min", [h, constant("act_high", arrays["act_high"])], ONNX_OUTPUT if task.size == 0 else "clipped")
    if task.size:
        equal = node("Equal", [columns(state_dim, obs_dim, "task"), constant("task_onehot", task)], "task_equal")  # NaN: not equal
        matches = node("ReduceMin", [node("Cast", [equal], "task_equal_float", to=TensorProto.FLOAT)], "task_matches_float", axes=[1], keepdims=1)
        matches = node("Cast", [matches], "task_matches", to=TensorProto.BOOL)
        node("Where", [matches, h, constant("nan", np.array(np.nan))], ONNX_OUTPUT)

    graph = helper.make_graph(
        nodes,
        "lwd_gym_policy",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["batch", obs_dim])],
        [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["batch", action_dim])],
        initializers,
        doc_string=f"raw observation [batch, {obs_dim}] -> raw action [batch, {action_dim}], normalised and clipped inside"
        + (f"; observations whose last {task.size} entries are not the task one-hot {task.tolist()} get NaN actions" if task.size else ""),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="lwd_gym", producer_version=__version__)
    model.ir_version = ONNX_IR_VERSION
    props = {**(metadata or {}), "state_dim": str(state_dim), "obs_dim": str(obs_dim), "task_onehot": json.dumps(task.tolist())}
    helper.set_model_props(model, props)
    onnx_.checker.check_model(model, full_check=True)  # also runs shape inference over the graph
    return model


def write_onnx_policy(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> Path:
    """Write :func:`onnx_policy_model` of ``arrays`` to ``path`` atomically (``.onnx`` appended
    if missing); returns the path written.  Run it with onnxruntime::

        session = onnxruntime.InferenceSession(path)
        action = session.run(None, {"observation": obs[None].astype(np.float32)})[0][0]
    """
    data = onnx_policy_model(arrays, metadata).SerializeToString()
    path = _with_suffix(path, ".onnx")
    atomic_write(path, lambda tmp: _write_bytes(tmp, data))
    return path


def _write_bytes(filename: str, data: bytes) -> None:
    with open(filename, "wb") as f:
        f.write(data)
