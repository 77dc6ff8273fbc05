"""Property-based checks (hypothesis): bad input to predict or learn is a clear error naming the
problem, and good input always gives a finite action inside the action space."""
import copy
import re

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lwd_gym import DPAgent, LWDAgent, MLPAgent
from lwd_gym.data.demonstrations import Demonstrations
from lwd_gym.data.normalizer import Normalizer
from lwd_gym.data.snippets import SnippetDataset

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
OBS_DIM = 2  # the two-paths env's state


@pytest.fixture(scope="module")
def agents(bimodal_dataset):
    lwd = LWDAgent(action_horizon=4, latent_dim=16, hypernet_size="xs", policy_hidden=(8,), denoiser_size="xs", num_inference_steps=2, device="cpu")
    dp = DPAgent(action_horizon=4, prediction_horizon=8, denoiser_size="xs", num_inference_steps=2, device="cpu")
    mlp = MLPAgent(hidden=(8,), device="cpu")
    return {
        "lwd": lwd.learn(bimodal_dataset, vae_steps=2, diffusion_steps=2, progress_bar=False),
        "dp": dp.learn(bimodal_dataset, steps=2, progress_bar=False),
        "mlp": mlp.learn(bimodal_dataset, steps=2, progress_bar=False),
    }


agent_names = st.sampled_from(["lwd", "dp", "mlp"])


@SETTINGS
@given(name=agent_names, shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
def test_observation_of_a_wrong_shape_is_refused(agents, name, shape):
    if shape == (OBS_DIM,) or (len(shape) == 2 and shape[1] == OBS_DIM and shape[0] > 0):
        return  # a valid shape
    with pytest.raises(ValueError, match=rf"observation has shape {re.escape(str(shape))}; expected \({OBS_DIM},\)"):
        agents[name].predict(np.zeros(shape, np.float32))


@SETTINGS
@given(
    name=agent_names,
    obs=hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.just(OBS_DIM)), elements=st.floats(allow_nan=True, allow_infinity=True)),
)
def test_non_finite_observations_are_refused(agents, name, obs):
    if np.isfinite(obs).all():
        obs[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        agents[name].predict(obs)


@SETTINGS
@given(
    name=agent_names,
    dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_]),
    n=st.integers(1, 6),
    data=st.data(),
)
def test_any_real_dtype_gives_actions_in_the_action_space(agents, name, dtype, n, data):
    dtype = np.dtype(dtype)
    bounds = {} if dtype.kind == "b" else dict(min_value=0 if dtype.kind == "u" else -100, max_value=100)
    if dtype.kind == "f":
        bounds.update(allow_nan=False, allow_infinity=False)
    obs = data.draw(hnp.arrays(dtype, (n, OBS_DIM), elements=hnp.from_dtype(dtype, **bounds)))
    agent = agents[name]
    actions, state = agent.predict(obs, episode_start=np.ones(n, bool))
    assert state is None and actions.shape == (n, *agent.action_space.shape) and actions.dtype == agent.action_space.dtype
    assert np.isfinite(actions).all() and agent.action_space.contains(actions[0])


@SETTINGS
@given(name=agent_names, dtype=st.sampled_from([np.complex64, np.str_, object]))
def test_non_real_dtypes_are_refused(agents, name, dtype):
    obs = np.zeros(OBS_DIM, dtype=dtype) if dtype is not np.str_ else np.array(["a", "b"])
    with pytest.raises(ValueError, match="real-valued numeric"):
        agents[name].predict(obs)


@pytest.mark.parametrize("name", ["lwd", "dp", "mlp"])
def test_dict_observation_for_a_box_agent(agents, name):
    with pytest.raises(ValueError, match="observation is a dict.*FlattenObservation"):
        agents[name].predict({"state": np.zeros(OBS_DIM)})


@SETTINGS
@given(name=agent_names, n=st.integers(1, 5), m=st.integers(0, 7))
def test_episode_start_of_the_wrong_length_is_refused(agents, name, n, m):
    if m == n:
        return
    with pytest.raises(ValueError, match=f"episode_start has {m} entries for {n} observation"):
        agents[name].predict(np.zeros((n, OBS_DIM)), episode_start=np.ones(m, bool))


@SETTINGS
@given(name=agent_names, n=st.integers(1, 5), m=st.integers(1, 5), data=st.data())
def test_continuing_a_batch_of_another_size_is_refused(agents, name, n, m, data):
    """The agent holds plans for n envs; m continuing envs cannot be matched to them."""
    agent = agents[name]
    agent.predict(np.zeros((n, OBS_DIM)), episode_start=np.ones(n, bool))
    starts = np.array(data.draw(st.lists(st.booleans(), min_size=m, max_size=m)))
    if m == n or starts.all():
        agent.predict(np.zeros((m, OBS_DIM)), episode_start=starts)  # fine: same envs, or all new episodes
        return
    with pytest.raises(ValueError, match=f"batch of {m} observation.*plans for {n} environment"):
        agent.predict(np.zeros((m, OBS_DIM)), episode_start=starts)


@pytest.mark.parametrize("bad", [np.array([0.5, 1.0]), np.array(["yes", "no"])])
def test_episode_start_must_be_boolean(agents, bad):
    with pytest.raises(ValueError, match="episode_start must hold booleans"):
        agents["mlp"].predict(np.zeros((2, OBS_DIM)), episode_start=bad)


@pytest.mark.parametrize("starts", [np.array([1, 0]), np.array([1.0, 0.0]), [True, False], np.array([[True], [False]])])
def test_episode_start_as_zero_one_numbers_or_a_list_means_the_same_as_booleans(agents, starts):
    agent = agents["lwd"]
    obs = np.zeros((2, OBS_DIM))
    agent.predict(obs, episode_start=np.ones(2, bool))
    agent.predict(obs, episode_start=np.zeros(2, bool))
    agent.predict(obs, episode_start=starts)
    assert agent.last_replanned.tolist() == [True, False]


def test_float64_beyond_float32_range_is_named(agents):
    with pytest.raises(ValueError, match="beyond the float32 range"):
        agents["mlp"].predict(np.array([1e300, 0.0]))


@pytest.mark.parametrize("name", ["lwd", "dp", "mlp"])
def test_huge_observations_give_an_error_not_a_nan_action(agents, name):
    """3e38, normalised by the data's state std (< 1), exceeds the float32 range: the agent must
    say so rather than act on it (what a network makes of inf inputs differs between CPUs, and
    a clipped NaN would come out as a bound action), on both acting paths, and keep its plans."""
    agent = copy.deepcopy(agents[name])
    assert (agent.obs_normalizer.std < 1).all()
    normal = np.zeros((2, OBS_DIM), np.float32)
    for on_host in (True, False):
        agent.act_on_host = on_host
        agent.predict(normal, episode_start=np.ones(2, bool))
        steps = agent._acting.steps.copy()
        huge = normal.copy()
        huge[1] = 3e38
        with pytest.raises(FloatingPointError, match=r"environment\(s\) \[1\] overflow float32 once normalised"):
            agent.predict(huge)
        np.testing.assert_array_equal(agent._acting.steps, steps)
        agent.predict(normal)  # acting goes on


# ---------------------------------------------------------------- datasets
def demos(lengths, obs_dim=2, act_dim=2, nan_at=None):
    rng = np.random.default_rng(0)
    obs = [rng.normal(size=(n, obs_dim)).astype(np.float32) for n in lengths]
    act = [rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32) for n in lengths]
    box = gym.spaces.Box(-1, 1, (act_dim,), np.float32)
    return Demonstrations(obs, act, np.zeros(len(lengths), np.int64), gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32), box, 1)


@SETTINGS
@given(lengths=st.lists(st.integers(1, 30), min_size=1, max_size=6), snippet=st.integers(1, 40))
def test_snippets_exist_exactly_when_an_episode_is_long_enough(lengths, snippet):
    d = demos(lengths)
    norm = Normalizer(np.zeros(2, np.float32), np.ones(2, np.float32))
    if max(lengths) < snippet:
        with pytest.raises(ValueError, match=f"no episode is at least snippet_length={snippet} steps long"):
            SnippetDataset(d, snippet, norm, norm)
        return
    ds = SnippetDataset(d, snippet, norm, norm)
    assert len(ds) == sum(n for n in lengths if n >= snippet)
    batch = ds.get_batch(torch.arange(len(ds)))
    assert batch["states"].shape == (len(ds), snippet, 2) and batch["mask"][:, 0].all()


@SETTINGS
@given(lengths=st.lists(st.integers(1, 30), min_size=1, max_size=6), snippet=st.integers(1, 40))
def test_pad_short_episodes_keeps_a_snippet_per_step_of_every_episode(lengths, snippet):
    norm = Normalizer(np.zeros(2, np.float32), np.ones(2, np.float32))
    ds = SnippetDataset(demos(lengths), snippet, norm, norm, pad_short_episodes=True)
    assert len(ds) == sum(lengths)
    mask = ds.get_batch(torch.arange(len(ds)))["mask"]
    assert mask[:, 0].all() and (mask.sum(1) == torch.tensor([min(n - t, snippet) for n in lengths for t in range(n)])).all()
