"""export_onnx: the ONNX model, run by onnxruntime, acts exactly like the agent's own policy."""
import json
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from lwd_gym import DPAgent, LDPAgent, LWDAgent, MLPAgent, RandomAgent, export
from lwd_gym.demo import ENV_ID
from lwd_gym.export import NumpyPolicy, export_policy

# The numpy export's tiny agents (one generated policy per episode), shared rather than copied.
from test_export import FIT, TINY, TOL, agent, multitask_agent  # noqa: E402,F401  (fixtures)


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session, observations):
    return session.run(None, {"observation": np.asarray(observations, dtype=np.float32)})[0]


def _first_obs(env_seed=0):
    obs, _ = gym.make(ENV_ID).reset(seed=env_seed)
    return obs


def _agent_rollout(agent, steps=30, task=None):
    """Observations and ``predict`` actions of the episode that starts at ``_first_obs()`` (one plan only)."""
    env = gym.make(ENV_ID)
    state, _ = env.reset(seed=0)
    observations, actions = [], []
    for t in range(steps):
        obs = state if task is None else np.concatenate([state, task]).astype(np.float32)
        action, _ = agent.predict(obs, episode_start=np.array([t == 0]), deterministic=True)
        observations.append(obs)
        actions.append(action)
        state, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    assert agent.num_replans == 1  # the whole sequence used the exported policy
    return np.stack(observations), np.stack(actions)


def _assert_acts_like(session, observations, actions):
    """The model's actions equal ``actions`` one observation at a time ([1, obs_dim]) and batched."""
    singles = np.concatenate([_run(session, o[None]) for o in observations])
    np.testing.assert_allclose(singles, actions, **TOL)
    batched = _run(session, observations)
    assert batched.shape == actions.shape and batched.dtype == np.float32
    np.testing.assert_allclose(batched, actions, **TOL)


def test_lwd_model_acts_like_predict(agent, tmp_path):
    path = agent.export_onnx(tmp_path / "policy.onnx", _first_obs())
    observations, actions = _agent_rollout(agent)
    assert len(observations) > 3
    _assert_acts_like(_session(path), observations, actions)


def test_seeded_stochastic_export_matches_seeded_predict_and_the_npz(agent, tmp_path):
    obs0 = _first_obs()
    a = agent.export_onnx(tmp_path / "a.onnx", obs0, deterministic=False, seed=7)
    b = agent.export_onnx(tmp_path / "b.onnx", obs0, deterministic=False, seed=7)
    other = agent.export_onnx(tmp_path / "other.onnx", obs0, deterministic=False, seed=8)
    assert a.read_bytes() == b.read_bytes()  # reproducible, byte for byte
    agent.reset()
    agent.seed_envs([0], [7], num_envs=1)
    observations = obs0 + np.linspace(0, 0.1, 5)[:, None].astype(np.float32)
    actions = np.stack([agent.predict(o, episode_start=np.array([i == 0]), deterministic=False)[0] for i, o in enumerate(observations)])
    _assert_acts_like(_session(a), observations, actions)
    assert not np.allclose(_run(_session(other), observations), actions)  # the seed reached the sampler
    numpy_policy = NumpyPolicy.load(export_policy(agent, tmp_path / "a.npz", obs0, deterministic=False, seed=7))
    np.testing.assert_allclose(_run(_session(a), observations), numpy_policy(observations), **TOL)  # the same policy as the .npz


def test_multitask_model_fixes_the_task_and_gives_nan_for_another(multitask_agent, tmp_path):
    task = np.array([0.0, 1.0], dtype=np.float32)
    path = multitask_agent.export_onnx(tmp_path / "task1", np.concatenate([_first_obs(), task]))
    assert path == tmp_path / "task1.onnx"
    observations, actions = _agent_rollout(multitask_agent, task=task)
    session = _session(path)
    _assert_acts_like(session, observations, actions)
    mixed = observations.copy()
    mixed[::2, 2:] = [1.0, 0.0]  # every other row: the other task's one-hot
    out = _run(session, mixed)
    assert np.isnan(out[::2]).all()  # never silently the wrong task's policy
    np.testing.assert_allclose(out[1::2], actions[1::2], **TOL)
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(props["task_onehot"]) == [0.0, 1.0] and (props["state_dim"], props["obs_dim"]) == ("2", "4")


@pytest.mark.parametrize("n_tasks", [1, 2])
def test_mlp_model_acts_like_predict_and_clips(tiny_datasets, tmp_path, n_tasks):
    mlp = MLPAgent(hidden=(8, 8), device="cpu").learn(tiny_datasets[:n_tasks], steps=2, progress_bar=False)
    rng = np.random.default_rng(0)
    observations = rng.uniform(-1, 1, (40, 2)).astype(np.float32)
    if n_tasks == 2:  # the MLP reads the task id from the observation: both tasks in one batch
        observations = np.concatenate([observations, np.eye(2, dtype=np.float32)[np.arange(40) % 2]], axis=1)
    _assert_acts_like(_session(mlp.export_onnx(tmp_path / "mlp.onnx")), observations, mlp.predict(observations)[0])
    # Narrow bounds, inside the actions' own range: the clip must bite on both sides, in the graph as in predict.
    unclipped = mlp.predict(observations)[0]
    low, high = np.quantile(unclipped, 0.25, axis=0), np.quantile(unclipped, 0.75, axis=0)
    mlp.action_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32))
    actions = mlp.predict(observations)[0]
    assert (actions == mlp.action_space.low).any() and (actions == mlp.action_space.high).any()
    _assert_acts_like(_session(mlp.export_onnx(tmp_path / "clipped.onnx", observations[0])), observations, actions)


def test_model_interface(agent, tmp_path):
    path = agent.export_onnx(tmp_path / "out" / "policy", _first_obs())  # suffix added, dir created
    assert path == tmp_path / "out" / "policy.onnx"
    assert sorted(p.name for p in path.parent.iterdir()) == ["policy.onnx"]  # one file, no temp file left behind
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("observation", "action")
    for value, size in ((inp, 2), (out, 2)):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        batch, features = value.type.tensor_type.shape.dim
        assert batch.dim_param == "batch" and not batch.HasField("dim_value") and features.dim_value == size
    assert [o.version for o in model.opset_import] == [export.ONNX_OPSET] and model.ir_version == export.ONNX_IR_VERSION
    props = {p.key: p.value for p in model.metadata_props}
    assert props["agent"] == "LWDAgent" and props["deterministic"] == "True" and json.loads(props["task_onehot"]) == []
    assert _run(_session(path), np.zeros((7, 2))).shape == (7, 2)  # any batch size


@pytest.mark.parametrize("agent_class", [DPAgent, LDPAgent, RandomAgent])
def test_agents_without_one_network_refuse_clearly(agent_class, tmp_path):
    with pytest.raises(NotImplementedError, match=rf"{agent_class.__name__} cannot be exported to ONNX.*LWDAgent.*MLPAgent"):
        agent_class(device="cpu").export_onnx(tmp_path / "out" / "p.onnx", np.zeros(2, np.float32))
    assert not (tmp_path / "out").exists()


def test_bad_inputs_raise_before_writing(agent, tmp_path):
    out = tmp_path / "out"
    for untrained in (LWDAgent(device="cpu"), MLPAgent(device="cpu")):
        with pytest.raises(ValueError, match="trained"):
            untrained.export_onnx(out / "p.onnx", _first_obs())
    for bad in (_first_obs()[:1], _first_obs()[None], np.array([np.nan, 0.0])):
        with pytest.raises(ValueError, match="shape|NaN"):
            agent.export_onnx(out / "p.onnx", bad)
    assert not out.exists()


def test_export_without_onnx_names_the_extra(agent, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "lwd-gym\[onnx\]"'):
        agent.export_onnx(tmp_path / "out" / "p.onnx", _first_obs())
    assert not (tmp_path / "out").exists()


def test_a_failed_write_leaves_the_old_file_whole(agent, tmp_path, monkeypatch):
    path = agent.export_onnx(tmp_path / "out" / "policy.onnx", _first_obs())
    before = path.read_bytes()

    def crash(filename, data):
        with open(filename, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(export, "_write_bytes", crash)
    with pytest.raises(OSError, match="disk full"):
        agent.export_onnx(path, _first_obs(), seed=1)
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["policy.onnx"]


def test_model_runs_with_onnxruntime_alone(agent, tmp_path):
    path = agent.export_onnx(tmp_path / "policy.onnx", _first_obs())
    observations, actions = _agent_rollout(agent)
    np.save(tmp_path / "obs.npy", observations)
    script = textwrap.dedent(f"""
        import sys
        for name in ("torch", "diffusers", "lwd_gym", "gymnasium", "minari", "onnx"):
            sys.modules[name] = None  # any import of these now fails: only numpy and onnxruntime
        import numpy as np
        import onnxruntime as ort
        session = ort.InferenceSession({str(path)!r}, providers=["CPUExecutionProvider"])
        np.save({str(tmp_path / "actions.npy")!r}, session.run(None, {{"observation": np.load({str(tmp_path / "obs.npy")!r})}})[0])
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=120)
    np.testing.assert_allclose(np.load(tmp_path / "actions.npy"), actions, **TOL)


def test_export_latency_benchmark_smoke(tmp_path):
    from benchmarks import export_latency

    results = export_latency.main(["--profile", "tiny", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "export_latency.json").read_text())
    assert saved["benchmark"] == "export_latency" and saved["sizes"] == [6, 16, 16, 2] and results["runners"] == saved["runners"]
    assert [r["runner"] for r in saved["runners"]] == ["numpy (.npz)", "onnxruntime (.onnx)"]
    for r in saved["runners"]:
        assert r["file_bytes"] > 0 and 0 < r["median_us"] <= r["p90_us"] and r["calls"] == 200
