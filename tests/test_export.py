"""export_policy: the numpy artefact acts exactly like the agent's own generated policy."""
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest

from lwd_gym import LWDAgent, MLPAgent
from lwd_gym.demo import ENV_ID
from lwd_gym.export import RUNNER_SOURCE, NumpyPolicy, export_policy

# action_horizon beyond the episode: one generated policy per episode, as exported.
TINY = dict(action_horizon=1000, snippet_length=8, latent_dim=16, hypernet_size="xs", policy_hidden=(8,))
TINY |= dict(denoiser_size="xs", num_inference_steps=2, device="cpu")
FIT = dict(vae_steps=2, diffusion_steps=2, progress_bar=False)
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture
def agent(tiny_datasets):
    return LWDAgent(**TINY).learn(tiny_datasets[0], **FIT)


@pytest.fixture
def multitask_agent(tiny_datasets):
    return LWDAgent(**TINY, condition_on="obs+task").learn(tiny_datasets, **FIT)


def _agent_rollout(agent, steps=30, task=None):
    """Observations and ``predict`` actions of the episode that starts at ``_first_obs()`` (one plan only)."""
    env = gym.make(ENV_ID)
    state, _ = env.reset(seed=0)
    observations, actions = [], []
    for t in range(steps):
        obs = state if task is None else np.concatenate([state, task])
        action, _ = agent.predict(obs, episode_start=np.array([t == 0]), deterministic=True)
        observations.append(obs)
        actions.append(action)
        state, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    assert agent.num_replans == 1  # the whole sequence used the exported policy
    return np.stack(observations), np.stack(actions)


def _first_obs(env_seed=0):
    obs, _ = gym.make(ENV_ID).reset(seed=env_seed)
    return obs


def test_artefact_acts_like_predict(agent, tmp_path):
    obs0 = _first_obs()
    path = export_policy(agent, tmp_path / "policy.npz", obs0)
    observations, actions = _agent_rollout(agent)
    assert len(observations) > 3
    policy = NumpyPolicy.load(path)
    np.testing.assert_allclose(np.stack([policy(o) for o in observations]), actions, **TOL)
    np.testing.assert_allclose(policy(observations), actions, **TOL)  # batch call
    assert policy(observations).dtype == np.float32


def test_npz_holds_plain_float32_arrays(agent, tmp_path):
    path = export_policy(agent, tmp_path / "out" / "policy", _first_obs())  # suffix added, dir created
    assert path == tmp_path / "out" / "policy.npz"
    assert sorted(p.name for p in path.parent.iterdir()) == ["policy.npz"]  # no temp file left behind
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    assert sorted(arrays) == sorted(["W0", "b0", "W1", "b1", "obs_mean", "obs_std", "act_mean", "act_std", "act_low", "act_high", "state_dim", "obs_dim", "task"])
    assert arrays["W0"].shape == (8, 2) and arrays["b0"].shape == (8,) and arrays["W1"].shape == (2, 8) and arrays["b1"].shape == (2,)
    assert all(v.dtype == np.float32 for k, v in arrays.items() if not k.endswith("_dim"))
    assert int(arrays["state_dim"]) == 2 and int(arrays["obs_dim"]) == 2
    assert arrays["task"].shape == (0,)  # single task: no one-hot
    np.testing.assert_array_equal(arrays["obs_mean"], agent.obs_normalizer.mean)
    np.testing.assert_array_equal(arrays["act_low"], agent.action_space.low)


def test_export_leaves_the_agents_plans_alone(agent, tmp_path):
    obs = _first_obs()
    agent.predict(obs, episode_start=np.array([True]), deterministic=False)
    weights, steps, replans = agent._acting.plans.weights.clone(), agent._acting.steps.copy(), agent.num_replans
    rng_state = agent._rng.get_state()
    p = NumpyPolicy.load(export_policy(agent, tmp_path / "p.npz", obs, deterministic=False))
    q = NumpyPolicy.load(export_policy(agent, tmp_path / "q.npz", obs, deterministic=False))
    assert agent.num_replans == replans and np.array_equal(agent._acting.steps, steps)
    assert (agent._acting.plans.weights == weights).all() and (agent._rng.get_state() == rng_state).all()
    assert not np.array_equal(p(obs), q(obs))  # unseeded stochastic exports draw fresh noise


def _agent_rollout_with(agent, obs0, deterministic, steps=5):
    """``predict`` actions along a short made-up path from ``obs0`` (one plan only)."""
    agent.num_replans = 0
    observations = obs0 + np.linspace(0, 0.1, steps)[:, None].astype(np.float32)
    actions = [agent.predict(o, episode_start=np.array([i == 0]), deterministic=deterministic)[0] for i, o in enumerate(observations)]
    assert agent.num_replans == 1
    return observations, np.stack(actions)


def test_seeded_export_matches_seeded_predict(agent, tmp_path):
    obs0 = _first_obs()
    for deterministic in (True, False):
        a = NumpyPolicy.load(export_policy(agent, tmp_path / "a.npz", obs0, deterministic=deterministic, seed=7))
        b = NumpyPolicy.load(export_policy(agent, tmp_path / "b.npz", obs0, deterministic=deterministic, seed=7))
        agent.reset()
        agent.seed_envs([0], [7], num_envs=1)
        observations, actions = _agent_rollout_with(agent, obs0, deterministic)
        np.testing.assert_allclose(a(observations), actions, **TOL)
        np.testing.assert_array_equal(a(observations), b(observations))  # reproducible


def test_multitask_artefact_acts_like_predict(multitask_agent, tmp_path):
    task = np.array([0.0, 1.0], dtype=np.float32)
    obs0 = np.concatenate([_first_obs(), task])
    policy = NumpyPolicy.load(export_policy(multitask_agent, tmp_path / "task1.npz", obs0))
    assert (policy.state_dim, policy.obs_dim) == (2, 4)
    observations, actions = _agent_rollout(multitask_agent, task=task)
    np.testing.assert_allclose(policy(observations), actions, **TOL)
    other_task = observations.copy()
    other_task[:, 2:] = [1.0, 0.0]
    with pytest.raises(ValueError, match=r"exported for task one-hot \[0.0, 1.0\]"):
        policy(other_task)  # never silently the wrong task's policy


def test_agent_method_writes_the_same_artefact(agent, tmp_path):
    obs0 = _first_obs()
    a = NumpyPolicy.load(agent.export_policy(tmp_path / "a", obs0, seed=3))
    b = NumpyPolicy.load(export_policy(agent, tmp_path / "b.npz", obs0, seed=3))
    observations = np.random.default_rng(0).uniform(-1, 1, (5, 2)).astype(np.float32)
    np.testing.assert_array_equal(a(observations), b(observations))


def test_shipped_runner_works_without_torch(agent, tmp_path):
    obs0 = _first_obs()
    path = export_policy(agent, tmp_path / "policy.npz", obs0, write_runner=True)
    runner = tmp_path / "numpy_policy.py"
    assert runner.read_text() == RUNNER_SOURCE
    observations, actions = _agent_rollout(agent)
    np.save(tmp_path / "obs.npy", observations)
    script = textwrap.dedent(f"""
        import importlib.util, sys
        for name in ("torch", "diffusers", "lwd_gym", "gymnasium", "minari"):
            sys.modules[name] = None  # any import of these now fails
        import numpy as np
        spec = importlib.util.spec_from_file_location("numpy_policy", {str(runner)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        policy = module.NumpyPolicy.load({str(path)!r})
        np.save({str(tmp_path / "actions.npy")!r}, policy(np.load({str(tmp_path / "obs.npy")!r})))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=120)
    np.testing.assert_allclose(np.load(tmp_path / "actions.npy"), actions, **TOL)


def test_bad_inputs_raise_clear_errors(agent, multitask_agent, tmp_path):
    obs, out = _first_obs(), tmp_path / "out"
    with pytest.raises(TypeError, match="needs an LWDAgent"):
        export_policy(MLPAgent(device="cpu"), out / "p.npz", obs)
    with pytest.raises(ValueError, match="trained"):
        export_policy(LWDAgent(device="cpu"), out / "p.npz", obs)
    for bad in (obs[:1], obs[None], np.array(["a", "b"]), np.concatenate([obs, [0.0]])):
        with pytest.raises(ValueError, match="shape"):
            export_policy(agent, out / "p.npz", bad)
    with pytest.raises(ValueError, match="NaN or inf"):
        export_policy(agent, out / "p.npz", np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="one-hot"):
        export_policy(multitask_agent, out / "p.npz", np.concatenate([obs, [1.0, 1.0]]))
    assert not out.exists()  # nothing written on failure
    policy = NumpyPolicy.load(export_policy(agent, out / "p.npz", obs))
    for bad in (obs[:1], np.zeros((2, 2, 2)), np.array([np.inf, 0.0])):
        with pytest.raises(ValueError, match="expected finite observation"):
            policy(bad)
