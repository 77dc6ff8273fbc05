"""Bad input gets a clear error naming the problem."""
import gymnasium as gym
import minari
import numpy as np
import pytest
from minari.data_collector.episode_buffer import EpisodeBuffer

from lwd_gym import BaseAgent, DPAgent, LDPAgent, LWDAgent, MLPAgent


@pytest.fixture
def agent(tiny_datasets):
    a = LWDAgent(action_horizon=4, latent_dim=16, hypernet_size="xs", policy_hidden=(8,), denoiser_size="xs", num_inference_steps=2, device="cpu")
    return a.learn(tiny_datasets[0], vae_steps=2, diffusion_steps=2, progress_bar=False)


@pytest.mark.parametrize("obs", [np.zeros(3), np.zeros((2, 3)), np.zeros((2, 2, 2)), np.zeros(())])
def test_wrong_observation_shape(agent, obs):
    with pytest.raises(ValueError, match=r"observation has shape .* expected \(2,\)"):
        agent.predict(obs)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_observation(agent, bad):
    with pytest.raises(ValueError, match="NaN or inf"):
        agent.predict(np.array([0.0, bad]))


def test_non_numeric_observation(agent):
    with pytest.raises(ValueError, match="numeric"):
        agent.predict(np.array(["a", "b"]))


def test_episode_start_of_wrong_length(agent):
    with pytest.raises(ValueError, match="episode_start has 3 entries for 2 observation"):
        agent.predict(np.zeros((2, 2)), episode_start=np.ones(3, dtype=bool))


def test_predict_before_learn():
    with pytest.raises(RuntimeError, match="learn"):
        LWDAgent(device="cpu").predict(np.zeros(2))


def test_invalid_task_one_hot(tiny_datasets):
    agent = MLPAgent(hidden=(8,), device="cpu").learn(tiny_datasets, steps=2, progress_bar=False)
    agent.predict(np.array([0.0, 0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="one-hot task id"):
        agent.predict(np.array([0.0, 0.0, 0.5, 0.5]))


def test_no_episode_as_long_as_a_snippet(tiny_datasets):
    with pytest.raises(ValueError, match="no episode is at least snippet_length=500"):
        LWDAgent(action_horizon=500, device="cpu").learn(tiny_datasets[0], progress_bar=False)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LWDAgent(action_horizon=500, latent_dim=16, hypernet_size="xs", policy_hidden=(8,), denoiser_size="xs", world_model=True,
                         world_model_hidden=(16,), world_model_warmup_epochs=0, num_inference_steps=2, pad_short_episodes=True, device="cpu"),
        lambda: LDPAgent(action_horizon=500, latent_dim=16, denoiser_size="xs", num_inference_steps=2, pad_short_episodes=True, device="cpu"),
        lambda: DPAgent(action_horizon=500, prediction_horizon=504, denoiser_size="xs", num_inference_steps=2, pad_short_episodes=True, device="cpu"),
    ],
    ids=["LWD+WM", "LDP", "DP"],
)
def test_pad_short_episodes_trains_on_episodes_shorter_than_the_horizon(make, tiny_datasets, tmp_path):
    agent = make()
    steps = dict(steps=2) if isinstance(agent, DPAgent) else dict(vae_steps=2, diffusion_steps=2)
    agent.learn(tiny_datasets[0], progress_bar=False, **steps)
    action, _ = agent.predict(np.zeros(2, np.float32), deterministic=True)
    assert np.isfinite(action).all()
    agent.save(tmp_path / "agent.ckpt")
    assert BaseAgent.load(tmp_path / "agent.ckpt", device="cpu").pad_short_episodes


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"condition_on": "goal"}, "condition_on"),
        ({"scheduler": "euler"}, "scheduler"),
        ({"latent_dim": 20, "latent_length": 16}, "divisible"),
        ({"action_horizon": 0}, "action_horizon"),
        ({"kl_coef": -1.0}, "kl_coef"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_invalid_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LWDAgent(**kwargs)


def test_task_condition_needs_several_datasets(tiny_datasets):
    with pytest.raises(ValueError, match="needs task ids"):
        LWDAgent(condition_on="task", device="cpu").learn(tiny_datasets[0], progress_bar=False)


def _write(dataset_id, observations, actions, obs_space, act_space):
    T = len(actions)
    buffer = EpisodeBuffer(
        id=0, observations=observations, actions=actions, rewards=np.zeros(T), terminations=np.zeros(T, bool),
        truncations=np.r_[np.zeros(T - 1, bool), True], infos={},
    )
    return minari.create_dataset_from_buffers(dataset_id, [buffer], observation_space=obs_space, action_space=act_space)


def test_nan_actions_in_dataset():
    box = gym.spaces.Box(-1, 1, (2,), np.float32)
    actions = np.zeros((10, 2), np.float32)
    actions[3, 1] = np.nan
    ds = _write("test/nan-v0", np.zeros((11, 2), np.float32), actions, box, box)
    with pytest.raises(ValueError, match="actions contain NaN"):
        LWDAgent(action_horizon=4, device="cpu").learn(ds, progress_bar=False)


def test_actions_outside_action_space():
    box = gym.spaces.Box(-1, 1, (2,), np.float32)
    ds = _write("test/big-v0", np.zeros((11, 2), np.float32), np.full((10, 2), 3.0, np.float32), box, box)
    with pytest.raises(ValueError, match="outside the action space"):
        LWDAgent(action_horizon=4, device="cpu").learn(ds, progress_bar=False)


def test_mismatched_spaces_across_task_datasets(tiny_datasets):
    box3 = gym.spaces.Box(-1, 1, (3,), np.float32)
    box2 = gym.spaces.Box(-1, 1, (2,), np.float32)
    other = _write("test/three-v0", np.zeros((11, 3), np.float32), np.zeros((10, 2), np.float32), box3, box2)
    with pytest.raises(ValueError, match="must share spaces"):
        LWDAgent(device="cpu").learn([tiny_datasets[0], other], progress_bar=False)


def test_dict_observation_space_is_rejected():
    space = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,), np.float32)})
    box = gym.spaces.Box(-1, 1, (2,), np.float32)
    ds = _write("test/dict-v0", {"a": np.zeros((11, 2), np.float32)}, np.zeros((10, 2), np.float32), space, box)
    with pytest.raises(ValueError, match="FlattenObservation"):
        LWDAgent(device="cpu").learn(ds, progress_bar=False)


def test_unknown_dataset_id():
    with pytest.raises(FileNotFoundError, match="no local Minari dataset 'nobody/nothing-v0'"):
        LWDAgent(device="cpu").learn("nobody/nothing-v0", progress_bar=False)


def test_mismatched_action_bounds_across_task_datasets(tiny_datasets):
    wide = gym.spaces.Box(-2, 2, (2,), np.float32)
    box = gym.spaces.Box(-1, 1, (2,), np.float32)
    other = _write("test/wide-v0", np.zeros((11, 2), np.float32), np.zeros((10, 2), np.float32), box, wide)
    with pytest.raises(ValueError, match="action bounds .* must share spaces"):
        MLPAgent(device="cpu").learn([tiny_datasets[0], other], progress_bar=False)


def test_dataset_without_episodes(tiny_datasets):
    empty = tiny_datasets[0].filter_episodes(lambda episode: False)
    assert empty.total_episodes == 0
    with pytest.raises(ValueError, match="'lwd/tiny/left-v0' has no episode with at least one step"):
        MLPAgent(device="cpu").learn(empty, progress_bar=False)


def test_empty_list_of_datasets():
    with pytest.raises(ValueError, match="no dataset given"):
        MLPAgent(device="cpu").learn([], progress_bar=False)
