"""benchmarks/sac_experts.py and the SAC actor export: the numpy actor is SB3's deterministic
action; a short run trains, resumes, picks and exports (a couple of hundred SAC steps only)."""
import json

import gymnasium as gym
import numpy as np
import pytest

from lwd_gym.envs.locomotion import SACActor, export_sac_actor

sb3 = pytest.importorskip("stable_baselines3")
pytest.importorskip("mujoco")


def _short_sac(env_id: str, steps: int = 150):
    model = sb3.SAC("MlpPolicy", gym.make(env_id), learning_starts=50, buffer_size=steps, batch_size=32, seed=0, device="cpu",
                    policy_kwargs={"net_arch": [32, 32]})  # fmt: skip
    return model.learn(steps)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "HalfCheetah-v5"])  # Pendulum: actions in [-2, 2], so the rescale matters
def test_numpy_actor_equals_sb3_deterministic_predict(tmp_path, env_id):
    model = _short_sac(env_id)
    path = export_sac_actor(model, tmp_path / "actor.safetensors", behaviour="expert", training_steps=150)
    actor = SACActor.load(path)
    assert actor.metadata["hidden"] == [32, 32] and actor.metadata["behaviour"] == "expert"
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    batch = [obs]
    for _ in range(63):
        obs, *_ = env.step(env.action_space.sample())
        batch.append(obs)
    batch = np.concatenate([np.array(batch), np.random.default_rng(0).normal(0, 3, (64, *obs.shape))])  # off-distribution too
    expected, _ = model.predict(batch, deterministic=True)
    np.testing.assert_allclose(actor(batch), expected, rtol=1e-5, atol=1e-5)
    for row in batch[:5]:
        np.testing.assert_allclose(actor(row), model.predict(row, deterministic=True)[0], rtol=1e-5, atol=1e-5)


def test_export_refuses_actors_it_cannot_reproduce(tmp_path):
    model = sb3.SAC("MlpPolicy", gym.make("Pendulum-v1"), use_sde=True, device="cpu", buffer_size=10)
    with pytest.raises(ValueError, match="gSDE"):
        export_sac_actor(model, tmp_path / "a.safetensors")


def test_pick_medium():
    from benchmarks.sac_experts import pick_medium

    evals = [{"step": s, "mean_return": r} for s, r in [(1, -300), (2, 900), (3, 1500), (4, 2500), (5, 3000)]]
    assert pick_medium(evals)["step"] == 3  # the first to reach a third of 3000
    assert pick_medium(evals[:1])["step"] == 1  # only the final one
    low = [{"step": 1, "mean_return": -5.0}, {"step": 2, "mean_return": -2.0}, {"step": 3, "mean_return": -3.0}]
    assert pick_medium(low)["step"] == 2  # the expert's return is not positive: the closest to a third of it (-1)
    assert pick_medium([{"step": 1, "mean_return": 100.0}, {"step": 2, "mean_return": 10.0}, {"step": 3, "mean_return": 600.0}])["step"] == 1  # none reaches 200: the closest


def test_training_script_trains_resumes_and_exports(tmp_path, monkeypatch):
    from benchmarks import sac_experts

    monkeypatch.setitem(sac_experts.PROFILES, "tiny", sac_experts.Profile(steps=200, eval_every=100, eval_episodes=1, save_every=100, learning_starts=50))
    out = tmp_path / "out"
    results = sac_experts.main(["--profile", "tiny", "--out", str(out), "--quiet"])
    assert [e["step"] for e in results["evaluations"]] == [100, 200]
    exported = results["exported"]
    assert exported["expert"]["training_steps"] == 200 and set(exported) == {"expert", "medium"}
    export_dir = out / "sac-experts-tiny"  # not the package's folder: a smoke test never replaces the shipped actors
    for behaviour in ("expert", "medium"):
        actor = SACActor.load(export_dir / f"halfcheetah-{behaviour}.safetensors")
        meta = json.loads((export_dir / f"halfcheetah-{behaviour}.json").read_text())
        assert meta["behaviour"] == behaviour and meta["env_id"] == "HalfCheetah-v5" and meta["obs_dim"] == 17 and meta["action_dim"] == 6
        assert meta["mean_return"] == exported[behaviour]["mean_return"] and actor.action_dim == 6
    # the exported expert is the saved model's deterministic policy
    run = sac_experts.run_dir("halfcheetah", "tiny", sac_experts.PROFILES["tiny"], out)
    model = sb3.SAC.load(run / "model.zip", device="cpu")
    obs = np.random.default_rng(0).normal(size=(16, 17))
    np.testing.assert_allclose(SACActor.load(export_dir / "halfcheetah-expert.safetensors")(obs), model.predict(obs, deterministic=True)[0], rtol=1e-5, atol=1e-5)

    # a longer budget for the same run: resumes from the checkpoint (model + replay buffer)
    monkeypatch.setitem(sac_experts.PROFILES, "tiny", sac_experts.Profile(steps=300, eval_every=100, eval_episodes=1, save_every=100, learning_starts=50))
    monkeypatch.setattr(sac_experts, "run_dir", lambda *args: run)
    again = sac_experts.main(["--profile", "tiny", "--out", str(out), "--quiet"])
    assert [e["step"] for e in again["evaluations"]] == [100, 200, 300]
    assert again["segments"][-1]["from_step"] == 200 and again["segments"][-1]["steps"] == 100
    # a finished run only re-exports
    third = sac_experts.main(["--profile", "tiny", "--out", str(out), "--quiet"])
    assert third["evaluations"] == again["evaluations"] and len(third["segments"]) == len(again["segments"])
