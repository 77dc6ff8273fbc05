"""Pretrained directories, the Hub (mocked: tests never reach the network), SB3's parameter
access, and ``load(env=...)``'s space check."""
import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch

import lwd_gym  # noqa: F401  (registers lwd_gym/Bimodal-v0)
from lwd_gym import BaseAgent, DPAgent, LWDAgent, MLPAgent
from lwd_gym.wrappers import TaskId

TINY_LWD = dict(action_horizon=4, latent_dim=16, hypernet_size="xs", policy_hidden=(8,), denoiser_size="xs", num_inference_steps=2, device="cpu")


@pytest.fixture
def agents(tiny_datasets):
    return {
        "lwd": LWDAgent(**TINY_LWD).learn(tiny_datasets, vae_steps=3, diffusion_steps=2, progress_bar=False),
        "dp": DPAgent(action_horizon=4, prediction_horizon=8, denoiser_size="xs", num_inference_steps=2, device="cpu").learn(tiny_datasets, steps=2, progress_bar=False),
        "mlp": MLPAgent(hidden=(16,), device="cpu").learn(tiny_datasets[0], steps=3, progress_bar=False),
    }


def rollout_actions(agent, n_steps=10):
    """Actions over a few steps of two envs from a fixed seed (plans and noise included)."""
    rng = np.random.default_rng(0)
    agent.set_random_seed(3)
    obs = rng.normal(size=(2, agent.state_space.shape[0])).astype(np.float32)
    if agent.num_tasks > 1:
        obs = np.concatenate([obs, np.eye(agent.num_tasks, dtype=np.float32)[[0, 1]]], axis=1)
    out = []
    for t in range(n_steps):
        action, _ = agent.predict(obs, episode_start=np.array([t == 0, t == 0]))
        out.append(action)
        obs[:, : agent.state_space.shape[0]] += 0.1 * action[:, : agent.state_space.shape[0]]
    return np.stack(out)


@pytest.mark.parametrize("name", ["lwd", "dp", "mlp"])
def test_from_pretrained_of_save_pretrained_acts_identically(agents, name, tmp_path):
    agent = agents[name]
    directory = agent.save_pretrained(tmp_path / "agent")
    assert sorted(p.name for p in directory.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = BaseAgent.from_pretrained(directory, device="cpu")
    assert type(loaded) is type(agent) and loaded.config == agent.config
    np.testing.assert_array_equal(rollout_actions(loaded), rollout_actions(agent))
    # the weights are a plain safetensors file any tool reads
    from safetensors.torch import load_file

    assert set(load_file(directory / "model.safetensors")) == {f"{m}.{k}" for m, p in agent.get_parameters().items() for k in p}


def test_model_card_tells_agent_data_training_and_evaluation(agents, tmp_path):
    card = (agents["lwd"].save_pretrained(tmp_path / "a", evaluation={"success_rate": 0.75, "n_episodes": 20}) / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: lwd-gym")
    assert "LWDAgent" in card and "`lwd/tiny/left-v0`, `lwd/tiny/right-v0`" in card
    assert "stage `vae`: 3 gradient steps" in card
    assert "| success_rate | 0.75 |" in card and "| `latent_dim` | `16` |" in card
    bare = (agents["mlp"].save_pretrained(tmp_path / "b") / "README.md").read_text()
    assert "No evaluation results" in bare


def test_pretrained_directory_refuses_mixed_or_missing_files(agents, tmp_path):
    one = agents["mlp"].save_pretrained(tmp_path / "one")
    other = MLPAgent(hidden=(16,), device="cpu", seed=1).learn(agents["mlp"].training_record["datasets"][0], steps=3, progress_bar=False)
    two = other.save_pretrained(tmp_path / "two")
    shutil.copy(two / "model.safetensors", one / "model.safetensors")  # weights of one save, config of another
    with pytest.raises(ValueError, match="does not match"):
        BaseAgent.from_pretrained(one, device="cpu")
    (two / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        BaseAgent.from_pretrained(two, device="cpu")
    with pytest.raises(ValueError, match="holds a MLPAgent, not a LWDAgent"):
        LWDAgent.from_pretrained(agents["mlp"].save_pretrained(tmp_path / "three"), device="cpu")


def test_untrained_agent_has_nothing_to_save(tmp_path):
    with pytest.raises(RuntimeError, match="not been trained"):
        LWDAgent(**TINY_LWD).save_pretrained(tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_from_pretrained_reads_a_hub_repo_through_huggingface_hub(agents, tmp_path, monkeypatch):
    import huggingface_hub

    snapshot = agents["mlp"].save_pretrained(tmp_path / "snapshot")
    calls = []

    def fake_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    loaded = BaseAgent.from_pretrained("someone/bimodal-mlp", device="cpu", revision="v1")
    assert calls[0][0] == "someone/bimodal-mlp" and calls[0][1]["revision"] == "v1"
    np.testing.assert_array_equal(rollout_actions(loaded), rollout_actions(agents["mlp"]))


def test_from_pretrained_offline_gives_a_clear_error(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(repo_id, **kwargs):
        raise LocalEntryNotFoundError("cannot reach the Hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(OSError, match="could not reach the Hugging Face Hub.*someone/agent.*local directory"):
        BaseAgent.from_pretrained("someone/agent", device="cpu")


def test_push_to_hub_uploads_the_pretrained_files(agents, tmp_path, monkeypatch):
    import huggingface_hub

    seen = {}

    def create_repo(self, repo_id, **kwargs):
        seen["created"] = (repo_id, kwargs)

    def upload_folder(self, *, repo_id, folder_path, commit_message=None, **kwargs):
        shutil.copytree(folder_path, tmp_path / "uploaded")  # what would have gone up
        seen["uploaded"] = (repo_id, commit_message)
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/0"})()

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    url = agents["lwd"].push_to_hub("someone/lwd-bimodal", private=True)
    assert url == "https://huggingface.co/someone/lwd-bimodal/commit/0"
    assert seen["created"] == ("someone/lwd-bimodal", {"private": True, "exist_ok": True})
    np.testing.assert_array_equal(rollout_actions(BaseAgent.from_pretrained(tmp_path / "uploaded", device="cpu")), rollout_actions(agents["lwd"]))


@pytest.mark.parametrize("name", ["lwd", "dp", "mlp"])
def test_set_parameters_of_get_parameters_round_trips(agents, name, tiny_datasets):
    agent = agents[name]
    other = type(agent)(agent.config.replace(seed=7), device="cpu")  # other initial weights, same shapes
    other.learn(tiny_datasets if agent.num_tasks > 1 else tiny_datasets[0], steps=1, progress_bar=False)
    assert not np.array_equal(rollout_actions(other), rollout_actions(agent))
    other.set_random_seed(agent.seed)
    other.obs_normalizer, other.action_normalizer = agent.obs_normalizer, agent.action_normalizer
    if hasattr(agent, "latent_normalizer"):
        other.latent_normalizer = agent.latent_normalizer
    other.set_parameters(agent.get_parameters())
    np.testing.assert_array_equal(rollout_actions(other), rollout_actions(agent))


def test_get_parameters_are_copies_and_set_parameters_checks_before_copying(agents):
    agent = agents["mlp"]
    params = agent.get_parameters()
    before = rollout_actions(agent)
    for tensor in params["net"].values():
        tensor.add_(1.0)  # a copy: the agent is untouched
    np.testing.assert_array_equal(rollout_actions(agent), before)
    name = next(iter(params["net"]))
    bad = {"net": {**params["net"], name: torch.zeros(3, 3, 3)}}
    with pytest.raises(ValueError, match=f"'net.{name}' has shape"):
        agent.set_parameters(bad)
    np.testing.assert_array_equal(rollout_actions(agent), before)  # nothing was copied
    with pytest.raises(ValueError, match="unknown modules \\['policy'\\]"):
        agent.set_parameters({"policy": {}})
    with pytest.raises(ValueError, match="was not given"):
        agent.set_parameters({"net": {name: params["net"][name]}})
    agent.set_parameters({"net": {name: params["net"][name]}}, exact_match=False)  # a part, the rest kept
    assert not np.array_equal(rollout_actions(agent), before)


def test_load_checks_the_env_spaces(agents, tmp_path):
    path = tmp_path / "mlp.ckpt"
    agents["mlp"].save(path)
    env = gym.make("lwd_gym/Bimodal-v0")
    assert isinstance(BaseAgent.load(path, env=env, device="cpu"), MLPAgent)
    with pytest.raises(ValueError, match="observation space"):
        BaseAgent.load(path, env=gym.make("Pendulum-v1"), device="cpu")
    vector = gym.vector.SyncVectorEnv([lambda: gym.make("lwd_gym/Bimodal-v0")] * 2)
    BaseAgent.load(path, env=vector, device="cpu")  # a vector env's sub-env spaces are checked
    multi = tmp_path / "lwd.ckpt"
    agents["lwd"].save(multi)
    with pytest.raises(ValueError, match="TaskId"):
        BaseAgent.load(multi, env=env, device="cpu")
    BaseAgent.load(multi, env=TaskId(env, 0, 2), device="cpu")


def test_old_checkpoints_without_a_training_record_still_load(agents, tmp_path):
    from lwd_gym.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "old.ckpt"
    agents["mlp"].save(path)
    tensors, meta = load_checkpoint(path)
    del meta["training"], meta["format_version"]
    save_checkpoint(path, tensors, meta)
    loaded = BaseAgent.load(path, device="cpu")
    assert loaded.training_record == {}
    assert "not recorded" in (loaded.save_pretrained(tmp_path / "d") / "README.md").read_text()
    assert json.loads((tmp_path / "d" / "config.json").read_text())["agent"] == "MLPAgent"
