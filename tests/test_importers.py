"""Importers of users' robomimic HDF5 / Diffusion Policy zarr files: round trips and bad input.

Every file is built here in tmp_path; Minari datasets go to the per-test dir (conftest).
"""
import json
import sys

import h5py
import minari
import numpy as np
import pytest

from lwd_gym.data import import_diffusion_policy_zarr, import_robomimic_hdf5, write_minari_dataset
from lwd_gym.data.importers import ROBOMIMIC_DEFAULT_OBS_KEYS

ENV_ARGS = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {"control_freq": 20}})
KEY_SHAPES = {"robot0_eef_pos": (3,), "robot0_eef_quat": (4,), "robot0_gripper_qpos": (2,), "object": (10,), "robot0_joint_pos": (7,), "grid": (2, 3)}


def _robomimic_demo(rng, steps, *, done_at_end, next_obs, action_scale=1.0):
    obs = {key: rng.normal(size=(steps, *shape)) for key, shape in KEY_SHAPES.items()}
    dones = np.zeros(steps, dtype=np.int64)
    dones[-1] = int(done_at_end)
    return {
        "obs": obs,
        "next_obs": {key: rng.normal(size=value.shape) for key, value in obs.items()} if next_obs else None,
        "actions": rng.uniform(-action_scale, action_scale, size=(steps, 7)),
        "rewards": rng.uniform(size=steps),
        "dones": dones,
    }


def _write_robomimic(path, demos, *, env_args=ENV_ARGS):
    """robomimic layout; demos are written in dict order (deliberately not sorted in tests)."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        if env_args is not None:
            data.attrs["env_args"] = env_args
        for name, demo in demos.items():
            group = data.create_group(name)
            if demo.get("actions") is not None:
                group.attrs["num_samples"] = len(demo["actions"])
            for field in ("actions", "rewards", "dones"):
                if demo.get(field) is not None:
                    group.create_dataset(field, data=demo[field])
            for sub in ("obs", "next_obs"):
                if demo.get(sub) is not None:
                    for key, value in demo[sub].items():
                        group.create_dataset(f"{sub}/{key}", data=value)
        f.create_group("mask").create_dataset("train", data=np.array([b"demo_0"]))
    return path


def _expected_obs(demo, keys):
    steps = len(demo["actions"])
    obs = np.concatenate([demo["obs"][k].reshape(steps, -1) for k in keys], axis=1)
    if demo["next_obs"] is not None:
        last = np.concatenate([demo["next_obs"][k][-1].reshape(-1) for k in keys])
    else:
        last = obs[-1]
    return np.concatenate([obs, last[None]]).astype(np.float32)


@pytest.fixture
def robomimic_demos():
    rng = np.random.default_rng(0)
    # Insertion order scrambled; numeric order is 0, 1, 2, 10 (lexical would be 0, 1, 10, 2).
    return {
        "demo_10": _robomimic_demo(rng, 4, done_at_end=True, next_obs=True),
        "demo_2": _robomimic_demo(rng, 6, done_at_end=False, next_obs=False),
        "demo_0": _robomimic_demo(rng, 5, done_at_end=True, next_obs=False),
        "demo_1": _robomimic_demo(rng, 3, done_at_end=False, next_obs=True),
    }


def test_robomimic_round_trip(tmp_path, robomimic_demos):
    path = _write_robomimic(tmp_path / "low_dim.hdf5", robomimic_demos)
    import_robomimic_hdf5(path, "imp/robomimic-v0")
    ds = minari.load_dataset("imp/robomimic-v0")
    assert ds.observation_space.shape == (19,) and ds.observation_space.dtype == np.float32
    assert np.all(ds.action_space.low == -1) and np.all(ds.action_space.high == 1) and ds.action_space.shape == (7,)
    episodes = list(ds.iterate_episodes())
    assert [int(ep.infos["demo_index"][0]) for ep in episodes] == [0, 1, 2, 10]
    for ep, name in zip(episodes, ["demo_0", "demo_1", "demo_2", "demo_10"]):
        demo = robomimic_demos[name]
        steps = len(demo["actions"])
        assert len(ep.infos["demo_index"]) == steps + 1
        np.testing.assert_array_equal(ep.observations, _expected_obs(demo, ROBOMIMIC_DEFAULT_OBS_KEYS))
        np.testing.assert_array_equal(ep.actions, demo["actions"].astype(np.float32))
        np.testing.assert_allclose(ep.rewards, demo["rewards"])
        np.testing.assert_array_equal(ep.terminations, demo["dones"].astype(bool))
        expected_trunc = np.zeros(steps, dtype=bool)
        expected_trunc[-1] = not demo["dones"][-1]
        np.testing.assert_array_equal(ep.truncations, expected_trunc)
    info = ds.storage.metadata["lwd_import"]
    assert info["obs_keys"] == list(ROBOMIMIC_DEFAULT_OBS_KEYS) and info["obs_key_sizes"] == [3, 4, 2, 10]
    assert json.loads(info["env_args"])["env_name"] == "Lift"
    assert ENV_ARGS in ds.storage.metadata["description"]


def test_robomimic_obs_keys_order_and_data_action_box(tmp_path):
    rng = np.random.default_rng(1)
    demos = {f"demo_{i}": _robomimic_demo(rng, 4, done_at_end=True, next_obs=False, action_scale=3.0) for i in range(2)}
    keys = ("grid", "object", "robot0_eef_pos")
    ds = import_robomimic_hdf5(_write_robomimic(tmp_path / "f.hdf5", demos), "imp/keys-v0", obs_keys=keys)
    assert ds.observation_space.shape == (6 + 10 + 3,)
    for ep, demo in zip(ds.iterate_episodes(), demos.values()):
        np.testing.assert_array_equal(ep.observations, _expected_obs(demo, keys))
    actions = np.concatenate([d["actions"] for d in demos.values()]).astype(np.float32)
    # Outside [-1, 1]: the box is the data's per-dimension range.
    np.testing.assert_array_equal(ds.action_space.low, actions.min(axis=0))
    np.testing.assert_array_equal(ds.action_space.high, actions.max(axis=0))


def test_robomimic_without_rewards_and_dones(tmp_path):
    demo = _robomimic_demo(np.random.default_rng(2), 3, done_at_end=True, next_obs=False)
    demo["rewards"] = demo["dones"] = None
    ep = next(import_robomimic_hdf5(_write_robomimic(tmp_path / "f.hdf5", {"demo_0": demo}), "imp/bare-v0").iterate_episodes())
    np.testing.assert_array_equal(ep.rewards, np.zeros(3))
    np.testing.assert_array_equal(ep.terminations, [False] * 3)
    np.testing.assert_array_equal(ep.truncations, [False, False, True])


def _broken_robomimic(tmp_path, breakage):
    demo = _robomimic_demo(np.random.default_rng(3), 4, done_at_end=True, next_obs=False)
    path = tmp_path / "bad.hdf5"
    if breakage == "no data group":
        with h5py.File(path, "w") as f:
            f.create_group("something_else")
        return path
    if breakage == "no demos":
        return _write_robomimic(path, {})
    if breakage == "no actions":
        demo["actions"] = None
    elif breakage == "no obs":
        demo["obs"] = None
    elif breakage == "obs length":
        demo["obs"]["object"] = demo["obs"]["object"][:-1]
    elif breakage == "nan action":
        demo["actions"][2, 1] = np.nan
    elif breakage == "missing default key":
        del demo["obs"]["object"]
    return _write_robomimic(path, {"demo_0": demo})


@pytest.mark.parametrize(
    "breakage, match",
    [
        ("no data group", "not a robomimic HDF5 file: no 'data' group"),
        ("no demos", "no demos"),
        ("no actions", "demo_0 has no 'actions'"),
        ("no obs", "demo_0 has no 'obs'"),
        ("obs length", r"obs/object has 3 steps, but actions has 4"),
        ("nan action", "actions contain NaN"),
        ("missing default key", r"\['object'\] not found; available obs keys: \['grid', 'robot0_eef_pos'"),
    ],
)
def test_robomimic_bad_input(tmp_path, breakage, match):
    with pytest.raises(ValueError, match=match):
        import_robomimic_hdf5(_broken_robomimic(tmp_path, breakage), "imp/bad-v0")
    assert "imp/bad-v0" not in minari.list_local_datasets()


def test_robomimic_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        import_robomimic_hdf5(tmp_path / "nope.hdf5", "imp/bad-v0")


# ---------------------------------------------------------------- Diffusion Policy zarr


def _zarr():
    return pytest.importorskip("zarr", reason="zarr is optional (pip install zarr) and needed for Diffusion Policy data")


def _write_replay_buffer(store_or_path, arrays, episode_ends):
    """Diffusion Policy's ReplayBuffer layout, in zarr format 2 as Diffusion Policy writes it."""
    zarr = _zarr()
    new_api = hasattr(zarr, "create_array")  # zarr 3
    root = zarr.open_group(store_or_path, mode="w", **({"zarr_format": 2} if new_api else {}))
    for group_name, items in (("data", arrays), ("meta", {} if episode_ends is None else {"episode_ends": np.asarray(episode_ends, dtype=np.int64)})):
        group = root.create_group(group_name)
        for key, value in items.items():
            (group.create_array if new_api else group.create_dataset)(key, data=value)


@pytest.fixture
def replay_arrays():
    rng = np.random.default_rng(0)
    n = 12
    return {
        "state": rng.normal(size=(n, 5)),
        "keypoint": rng.normal(size=(n, 9, 2)).astype(np.float32),
        "action": rng.uniform(0, 512, size=(n, 2)),
        "img": rng.integers(0, 255, size=(n, 4, 4, 3), dtype=np.uint8),
    }


@pytest.mark.parametrize("obs_key, zipped", [("state", False), ("keypoint", False), ("state", True)])
def test_diffusion_policy_round_trip(tmp_path, replay_arrays, obs_key, zipped):
    zarr = _zarr()
    ends = [3, 7, 12]
    if zipped:
        path = tmp_path / "replay.zarr.zip"
        store = zarr.storage.ZipStore(str(path), mode="w")
        _write_replay_buffer(store, replay_arrays, ends)
        store.close()
    else:
        path = tmp_path / "replay.zarr"
        _write_replay_buffer(str(path), replay_arrays, ends)
    ds = import_diffusion_policy_zarr(path, "imp/dp-v0", obs_key=obs_key)
    obs = replay_arrays[obs_key].reshape(12, -1).astype(np.float32)
    actions = replay_arrays["action"].astype(np.float32)
    assert ds.observation_space.shape == (obs.shape[1],)
    np.testing.assert_array_equal(ds.action_space.low, actions.min(axis=0))
    np.testing.assert_array_equal(ds.action_space.high, actions.max(axis=0))
    episodes = list(minari.load_dataset("imp/dp-v0").iterate_episodes())
    assert len(episodes) == 3
    for ep, start, end in zip(episodes, [0, 3, 7], ends):
        steps = end - start
        # Final observation = repeat of the episode's last row.
        np.testing.assert_array_equal(ep.observations, np.concatenate([obs[start:end], obs[end - 1 : end]]))
        np.testing.assert_array_equal(ep.actions, actions[start:end])
        np.testing.assert_array_equal(ep.rewards, np.zeros(steps))
        np.testing.assert_array_equal(ep.terminations, np.zeros(steps, dtype=bool))
        np.testing.assert_array_equal(ep.truncations, np.arange(steps) == steps - 1)
    info = ds.storage.metadata["lwd_import"]
    assert info["obs_key"] == obs_key and info["obs_shape"] == list(replay_arrays[obs_key].shape[1:])


@pytest.mark.parametrize(
    "breakage, match",
    [
        ("not increasing", r"episode_ends must be strictly increasing and end at N=12"),
        ("short end", r"episode_ends must be strictly increasing and end at N=12"),
        ("no episode_ends", "no 'meta/episode_ends'"),
        ("unknown obs key", r"no array data/pose; available keys: \['action', 'img', 'keypoint', 'state'\]"),
        ("length mismatch", "data/state has 11 rows but data/action has 12"),
    ],
)
def test_diffusion_policy_bad_input(tmp_path, replay_arrays, breakage, match):
    ends = {"not increasing": [5, 3, 12], "short end": [3, 7, 10], "no episode_ends": None}.get(breakage, [3, 7, 12])
    if breakage == "length mismatch":
        replay_arrays["state"] = replay_arrays["state"][:-1]
    _write_replay_buffer(str(tmp_path / "bad.zarr"), replay_arrays, ends)
    with pytest.raises(ValueError, match=match):
        import_diffusion_policy_zarr(tmp_path / "bad.zarr", "imp/bad-v0", obs_key="pose" if breakage == "unknown obs key" else "state")


def test_diffusion_policy_missing_path(tmp_path):
    _zarr()
    with pytest.raises(FileNotFoundError, match="not found"):
        import_diffusion_policy_zarr(tmp_path / "nope.zarr", "imp/bad-v0")


def test_diffusion_policy_without_zarr_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "zarr", None)  # makes `import zarr` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'lwd-gym\[zarr\]'"):
        import_diffusion_policy_zarr(tmp_path / "replay.zarr", "imp/bad-v0")


# ---------------------------------------------------------------- shared


def test_imported_dataset_trains_an_agent(tmp_path, robomimic_demos):
    from lwd_gym.agents import MLPAgent

    ds = import_robomimic_hdf5(_write_robomimic(tmp_path / "f.hdf5", robomimic_demos), "imp/train-v0")
    agent = MLPAgent(hidden=(8,), device="cpu").learn(ds, steps=2, progress_bar=False)
    action, _ = agent.predict(next(ds.iterate_episodes()).observations[0])
    assert action.shape == (7,)


def test_overwrite_and_env_free_writes(tmp_path, robomimic_demos):
    path = _write_robomimic(tmp_path / "f.hdf5", robomimic_demos)
    ds = import_robomimic_hdf5(path, "imp/keep-v0")
    with pytest.raises(FileExistsError):
        import_robomimic_hdf5(path, "imp/keep-v0", overwrite=False)
    buffers = [next(ds.iterate_episodes())]  # any non-empty list: the check comes first
    with pytest.raises(ValueError, match="both observation_space and action_space"):
        write_minari_dataset("imp/keep-v0", buffers, None, observation_space=ds.observation_space)
    # Neither failure removed the existing dataset.
    assert minari.load_dataset("imp/keep-v0").total_episodes == 4
