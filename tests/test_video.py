"""Evaluation videos (evaluate(video_dir=...), `lwd-gym eval --video`) and the demo's picture
(plot_demo, `lwd-gym demo --plot`)."""
import sys
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest

from lwd_gym import MLPAgent, RandomAgent, evaluate
from lwd_gym.cli import main
from lwd_gym.demo import ENV_ID, DemoRollouts, plot_demo, rollout_demo_agent

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def random_agent():
    env = gym.make(ENV_ID)
    return RandomAgent(env.observation_space, env.action_space, device="cpu", seed=0)


def frames(path):
    """(number of frames, first frame) of an MP4, read back with imageio's ffmpeg plugin."""
    imageio = pytest.importorskip("imageio")
    reader = imageio.get_reader(path, format="ffmpeg")
    try:
        return reader.count_frames(), reader.get_data(0)
    finally:
        reader.close()


def whole_episode(n_frames, length):
    """A video of an episode of ``length`` steps has the reset frame and one per step; moviepy
    1.0.3 sums the frames' float durations and may write the last frame once more."""
    return length + 1 <= n_frames <= length + 2


class NoRender(gym.Env):
    """A one-step env without any rendering."""

    metadata: ClassVar[dict] = {"render_modes": []}
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}


class MustNotAct:
    """An agent whose use means an episode ran."""

    observation_space = NoRender.observation_space
    action_space = NoRender.action_space

    def predict(self, *args, **kwargs):
        raise AssertionError("an episode ran before the env's rendering was checked")


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_evaluate_records_the_first_episodes_whole(random_agent, tmp_path, vectorization):
    pytest.importorskip("moviepy")
    kwargs = {"seed": 3, "n_envs": 3, "vectorization": vectorization, "count_flops": False, "progress": False}
    recorded = evaluate(random_agent, ENV_ID, 5, video_dir=tmp_path / "videos", n_videos=2, **kwargs)
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["eval-episode-0.mp4", "eval-episode-1.mp4"]
    for record in recorded.episodes:
        if record["episode"] < 2:
            assert record["video"] == str(tmp_path / "videos" / f"eval-episode-{record['episode']}.mp4")
            n_frames, first = frames(record["video"])
            assert whole_episode(n_frames, record["length"])
            assert first.shape == (128, 128, 3)
        else:
            assert "video" not in record
    # recording changes which env runs which episode, never an episode's result
    plain = evaluate(random_agent, ENV_ID, 5, **kwargs)
    for a, b in zip(recorded.episodes, plain.episodes):
        assert (a["seed"], a["length"], a["is_success"]) == (b["seed"], b["length"], b["is_success"])
        assert a["return"] == pytest.approx(b["return"])


def test_n_videos_beyond_the_episodes_records_every_one_and_the_callers_env_stays_open(random_agent, tmp_path):
    pytest.importorskip("moviepy")
    env = gym.make(ENV_ID, render_mode="rgb_array")
    result = evaluate(random_agent, env, 2, n_envs=1, video_dir=tmp_path / "v", n_videos=10, count_flops=False, progress=False)
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["eval-episode-0.mp4", "eval-episode-1.mp4"]
    assert all(whole_episode(frames(e["video"])[0], e["length"]) for e in result.episodes)
    env.reset(seed=0)
    env.step(env.action_space.sample())  # not closed by evaluate


def test_envs_that_cannot_render_are_refused_before_any_episode(tmp_path):
    pytest.importorskip("moviepy")
    env_id = "lwd_test/NoRender-v0"
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=NoRender)
    for env, match in [
        (env_id, r"lwd_test/NoRender-v0.*render_mode='rgb_array'"),  # takes no render_mode at all
        (lambda: NoRender(), r"render_mode='rgb_array'.*has render_mode=None"),
        (NoRender(), r"render_mode='rgb_array'.*NoRender has render_mode=None"),
        (lambda: gym.make(ENV_ID), r"render_mode='rgb_array'.*has render_mode=None"),
    ]:
        with pytest.raises(ValueError, match=match):
            evaluate(MustNotAct(), env, 3, n_envs=1, video_dir=tmp_path / "v", count_flops=False, progress=False)
    assert not (tmp_path / "v").exists() or not any((tmp_path / "v").iterdir())


def test_video_arguments_are_checked(random_agent, tmp_path, monkeypatch):
    for n_videos in (-1, 1.5, True):
        with pytest.raises(ValueError, match="n_videos"):
            evaluate(random_agent, ENV_ID, 2, video_dir=tmp_path, n_videos=n_videos, progress=False)
    with pytest.raises(ValueError, match="n_videos=2 needs video_dir"):
        evaluate(random_agent, ENV_ID, 2, n_videos=2, progress=False)
    vector = gym.vector.SyncVectorEnv([lambda: gym.make(ENV_ID)], autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    with pytest.raises(ValueError, match="VectorEnv"):
        evaluate(random_agent, vector, 2, video_dir=tmp_path, progress=False)
    vector.close()
    monkeypatch.setitem(sys.modules, "moviepy", None)  # import moviepy now raises ImportError
    with pytest.raises(ImportError, match=r"lwd-gym\[video\]"):
        evaluate(random_agent, ENV_ID, 2, video_dir=tmp_path, progress=False)
    # n_videos=0 records nothing and needs no moviepy
    assert "video" not in evaluate(random_agent, ENV_ID, 2, video_dir=tmp_path, n_videos=0, progress=False).episodes[0]


def test_cli_eval_video(random_agent, tmp_path, capsys):
    pytest.importorskip("moviepy")
    random_agent.save(tmp_path / "a.ckpt")
    common = ["eval", str(tmp_path / "a.ckpt"), ENV_ID, "--episodes", "3", "--n-envs", "2", "--quiet"]
    assert main([*common, "--video", str(tmp_path / "videos"), "--n-videos", "2"]) == 0
    assert "wrote 2 video(s) of episodes 0-1" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["eval-episode-0.mp4", "eval-episode-1.mp4"]
    (tmp_path / "file").write_text("x")
    for extra, match in [(["--n-videos", "2"], "--n-videos needs --video"), (["--video", str(tmp_path / "file")], "is a file")]:
        with pytest.raises(SystemExit) as exit_info:
            main([*common, *extra])
        assert exit_info.value.code == 2 and match in capsys.readouterr().err


def test_demo_plot_draws_the_rollouts(random_agent, tiny_datasets, tmp_path):
    mlp = MLPAgent(hidden=(16,), device="cpu", seed=0).learn(tiny_datasets[0], steps=3, progress_bar=False)
    rollouts = {name: rollout_demo_agent(agent, 4, seed=0, progress=False) for name, agent in [("random", random_agent), ("MLP", mlp)]}
    for r in rollouts.values():
        assert len(r.paths) == 4 and [len(p) for p in r.paths] == (r.lengths + 1).tolist()
        assert all(p.shape[1] == 2 and np.abs(p).max() <= 1 for p in r.paths)
        assert set(r.row()) == {"success", "left", "right", "collision", "length"}
    plot_demo(rollouts, tmp_path / "sub" / "demo.png")
    data = (tmp_path / "sub" / "demo.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    with pytest.raises(ValueError, match="at least one agent"):
        plot_demo({}, tmp_path / "empty.png")


def test_demo_plot_paths_follow_the_episode(tmp_path):
    """A hand-made rollout: the plot accepts every outcome (left, right, collision, time-out)."""
    paths = [np.array([[0.0, -0.5], [x, 0.0], [0.0, 0.8]]) for x in (-0.6, 0.6)] + [np.array([[0.0, -0.5], [0.0, -0.3]])] * 2
    rollout = DemoRollouts(
        paths=paths,
        sides=np.array([-1, 1, 0, 0]),
        collisions=np.array([False, False, True, False]),
        successes=np.array([True, True, False, False]),
        lengths=np.array([2, 2, 1, 1]),
    )
    assert rollout.row() == {"success": 0.5, "left": 0.25, "right": 0.25, "collision": 0.25, "length": 1.5}
    plot_demo({"hand-made": rollout}, tmp_path / "one.png", dpi=40)
    assert (tmp_path / "one.png").read_bytes().startswith(PNG_SIGNATURE)


def test_cli_demo_plot(tmp_path, capsys, monkeypatch):
    import lwd_gym.demo

    # the demo's agents with budgets of a few gradient steps: this checks the wiring, not the learning
    monkeypatch.setattr(lwd_gym.demo, "DEMO_STEPS", {"LWD": {"vae_steps": 2, "diffusion_steps": 2}, "MLP (BC)": {"steps": 2}})
    assert main(["demo", "--demos", "6", "--episodes", "3", "--device", "cpu", "--plot", str(tmp_path / "demo.png")]) == 0
    out = capsys.readouterr().out
    assert "LWD" in out and "MLP (BC)" in out and f"wrote {tmp_path / 'demo.png'}" in out
    assert (tmp_path / "demo.png").read_bytes().startswith(PNG_SIGNATURE)
    # an unwritable --plot is refused before any training
    monkeypatch.setattr(lwd_gym.demo, "run_demo", lambda **kw: 1 / 0)
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--plot", str(tmp_path)])
    assert exit_info.value.code == 2 and "is a directory" in capsys.readouterr().err


def test_demo_plot_without_matplotlib_fails_before_training(tmp_path, monkeypatch):
    import lwd_gym.demo

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # `from matplotlib.figure import Figure` now raises ImportError
    monkeypatch.setattr(lwd_gym.demo, "make_bimodal_dataset", lambda *a, **kw: pytest.fail("the demo started before checking matplotlib"))
    with pytest.raises(ImportError, match="pip install matplotlib"):
        lwd_gym.demo.run_demo(plot=tmp_path / "demo.png", progress=False)
