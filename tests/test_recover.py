"""Datasets that recover their env: Minari requirements, recover_env / make_env, evaluate(agent, dataset).

Every source records its requirements and makes an env with a registered spec; one source per
simulator is collected (1 episode) and its env recovered with the dataset's spaces.  Missing
simulators are simulated with ``sys.modules[name] = None`` (``import name`` then fails).
"""
import subprocess
import sys
import warnings

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec

from lwd_gym import RandomAgent, evaluate
from lwd_gym.data import collect, dataset_env_id, dataset_requirements, import_diffusion_policy_zarr, import_robomimic_hdf5, recover_env
from lwd_gym.data.collect import rollout_episodes, write_minari_dataset
from lwd_gym.data.sources import available_sources, get_source
from lwd_gym.envs import BimodalExpert, EnvUnavailableError, env_requirements, make_env
from lwd_gym.envs.registration import env_extra, missing_requirements

#: lwd-gym extra -> the module it installs (skipped where missing).
EXTRA_MODULES = {"metaworld": "metaworld", "pusht": "gym_pusht", "robosuite": "robosuite", "mujoco": "mujoco"}
BIMODAL_ID = "lwd_gym/Bimodal-v0"


def _simulator(extra):
    if extra is not None:
        pytest.importorskip(EXTRA_MODULES[extra], reason=f"pip install 'lwd-gym[{extra}]'")


def _bimodal_buffers(n=1):
    env = gym.make(BIMODAL_ID)
    try:
        return rollout_episodes(env, BimodalExpert(seed=0), n, seed=0, keep_failures=True, progress=False)[0]
    finally:
        env.close()


class _RecordedAs(gym.Env):
    """A two-paths-shaped env whose spec says it comes from elsewhere (to record such datasets
    without that package installed)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, spec):
        self.spec = spec


def _dataset_recorded_as(dataset_id, spec, requirements):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_minari_dataset(dataset_id, _bimodal_buffers(), _RecordedAs(spec), requirements=requirements)


# ---------------------------------------------------------------- every source, without collecting


@pytest.mark.parametrize("name", available_sources())
def test_every_source_records_requirements_and_a_registered_env(name):
    source = get_source(name)
    assert source.requirements == ([f"lwd-gym[{source.extra}]"] if source.extra else ["lwd-gym"])
    _simulator(source.extra)
    env = source.make_env()
    try:
        assert env.spec is not None, f"{name}: make_env must go through gymnasium.make so datasets record the spec"
        assert gym.spec(env.spec.id).id == env.spec.id  # registered (its namespace imported)
        assert env_requirements(env.spec) == source.requirements  # the env's extra is the source's
        recovered = make_env(env.spec)  # what recover_environment does with the recorded spec
        try:
            assert recovered.observation_space == env.observation_space
            assert recovered.action_space == env.action_space
        finally:
            recovered.close()
    finally:
        env.close()


# ---------------------------------------------------------------- one source per simulator, collected


@pytest.mark.parametrize("name", ["bimodal", "metaworld/reach", "pusht", "robosuite/lift", "mujoco/halfcheetah-random"])
def test_collected_dataset_recovers_its_env(name):
    source = get_source(name)
    _simulator(source.extra)
    dataset, _ = collect(name, 1, seed=0, keep_failures=True, progress=False)
    dataset = minari.load_dataset(dataset.spec.dataset_id)  # what a user reading it later gets
    assert dataset_requirements(dataset) == source.requirements
    assert dataset.storage.metadata["requirements"] == source.requirements  # Minari's own field
    for eval_env in (False, True):
        env = recover_env(dataset, eval_env=eval_env)
        try:
            assert env.observation_space == dataset.observation_space
            assert env.action_space == dataset.action_space
            obs, _ = env.reset(seed=0)
            assert dataset.observation_space.contains(np.asarray(obs, dtype=dataset.observation_space.dtype))
            np.testing.assert_allclose(obs, dataset[0].observations[0], rtol=1e-5, atol=1e-6)  # episode 0 used seed 0
        finally:
            env.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset.recover_environment().close()  # Minari's own recovery works too
    # ... and its requirement check is satisfied (lwd-gym is installed at a matching version).
    assert not [w for w in caught if "install" in str(w.message)], [str(w.message) for w in caught]


def test_bimodal_dataset_helper_records_requirements():
    from lwd_gym.envs import make_bimodal_dataset

    dataset = make_bimodal_dataset(2, progress=False)
    assert dataset_requirements(dataset) == ["lwd-gym"]
    assert dataset_env_id(dataset) == dataset_env_id(dataset, eval_env=True) == BIMODAL_ID
    assert recover_env(dataset.spec.dataset_id).spec.id == BIMODAL_ID  # a local id works too


# ---------------------------------------------------------------- clear errors


def test_unknown_namespace_says_to_import_its_package():
    with pytest.raises(EnvUnavailableError, match=r"'nowhere/Env-v0'.*namespace 'nowhere': import the package that registers it") as info:
        make_env("nowhere/Env-v0")
    assert isinstance(info.value, ImportError) and isinstance(info.value, gym.error.Error)  # old handlers still catch it
    assert isinstance(info.value.cause, gym.error.NamespaceNotFound)


def test_dataset_from_an_uninstalled_package_names_its_requirements():
    spec = EnvSpec("nowhere/Env-v0", entry_point="nowhere_pkg_for_lwd_tests.envs:Env")
    dataset = _dataset_recorded_as("test/nowhere-v0", spec, ["nowhere-pkg-for-lwd-tests>=1.0"])
    assert dataset_env_id(dataset) == "nowhere/Env-v0"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari's own "Package ... is not installed" warning
        with pytest.raises(EnvUnavailableError) as info:
            recover_env(dataset)
    message = str(info.value)
    assert "'nowhere/Env-v0'" in message and "'test/nowhere-v0'" in message
    assert "not installed here: nowhere-pkg-for-lwd-tests>=1.0" in message
    assert "pip install 'nowhere-pkg-for-lwd-tests>=1.0'" in message
    assert info.value.requirements == ["nowhere-pkg-for-lwd-tests>=1.0"]


def test_dataset_whose_simulator_is_missing_names_the_extra(monkeypatch):
    spec = EnvSpec("gym_pusht/PushT-v0", entry_point="gym_pusht.envs:PushTEnv", max_episode_steps=300)
    dataset = _dataset_recorded_as("test/pusht-missing-v0", spec, ["lwd-gym[pusht]"])
    monkeypatch.setitem(sys.modules, "gym_pusht", None)  # `import gym_pusht` fails
    with pytest.raises(EnvUnavailableError, match=r"'gym_pusht/PushT-v0'.*requires lwd-gym\[pusht\].*pip install 'lwd-gym\[pusht\]'"):
        recover_env(dataset)
    with pytest.raises(EnvUnavailableError, match=r"pip install 'lwd-gym\[pusht\]'"):
        make_env("gym_pusht/PushT-v0")


def test_lwd_env_whose_simulator_is_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "robosuite", None)
    with pytest.raises(EnvUnavailableError, match=r"'lwd_gym/Lift-v0'.*pip install 'lwd-gym\[robosuite\]'"):
        make_env("lwd_gym/Lift-v0")


def test_a_dataset_without_env_has_nothing_to_recover(tmp_path):
    ds = import_robomimic_hdf5(_robomimic_file(tmp_path / "f.hdf5", obs_dim=2), "imp/no-env-v0", obs_keys=["pos"])
    assert dataset_env_id(ds) is None and dataset_requirements(ds) == []
    with pytest.raises(ValueError, match="records no environment"):
        recover_env(ds)
    with pytest.raises(ValueError, match="records no environment"):
        evaluate(RandomAgent(ds.observation_space, ds.action_space), ds, 1, n_envs=1, progress=False)


def test_missing_requirements_look_into_extras():
    assert missing_requirements(["lwd-gym"]) == []
    assert missing_requirements(["numpy>=99"]) == [f"numpy>=99 (installed: {np.__version__})"]
    assert missing_requirements(["surely-not-installed-pkg"]) == ["surely-not-installed-pkg"]
    assert env_extra("lwd_gym/Metaworld-reach-v3") == "metaworld" and env_extra(BIMODAL_ID) is None
    assert env_extra("gym_pusht/PushT-v0") == "pusht"  # known before gym_pusht registers it


# ---------------------------------------------------------------- evaluate


def test_evaluate_on_a_dataset_uses_its_recorded_env():
    dataset = collect("bimodal", 2, seed=0, progress=False)[0]
    agent = RandomAgent(dataset.observation_space, dataset.action_space, seed=0)
    result = evaluate(agent, dataset, 2, n_envs=2, progress=False, count_flops=False)
    assert result.env == BIMODAL_ID and result.n_episodes == 2
    # The same episodes as with the id itself.
    by_id = evaluate(agent, BIMODAL_ID, 2, n_envs=2, progress=False, count_flops=False)
    assert [e["return"] for e in result.episodes] == [e["return"] for e in by_id.episodes]


def test_evaluate_pusht_by_id_in_a_fresh_interpreter():
    pytest.importorskip("gym_pusht", reason="pip install 'lwd-gym[pusht]'")
    code = (
        "import sys\n"
        "import gymnasium as gym, numpy as np\n"
        "from lwd_gym import RandomAgent, evaluate\n"
        "assert 'gym_pusht' not in sys.modules, 'importing lwd_gym imported gym_pusht'\n"
        "obs = gym.spaces.Box(0.0, 512.0, (5,), np.float64)\n"
        "act = gym.spaces.Box(0.0, 512.0, (2,), np.float32)\n"
        "result = evaluate(RandomAgent(obs, act, seed=0), 'gym_pusht/PushT-v0', 1, n_envs=1, progress=False, count_flops=False)\n"
        "assert result.n_episodes == 1 and result.env == 'gym_pusht/PushT-v0', result\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


# ---------------------------------------------------------------- importers' env_id


def _robomimic_file(path, *, obs_dim, action_dim=2, episodes=2, steps=5):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for i in range(episodes):
            demo = data.create_group(f"demo_{i}")
            demo.create_dataset("actions", data=rng.uniform(-1, 1, size=(steps, action_dim)))
            demo.create_dataset("obs/pos", data=rng.uniform(-1, 1, size=(steps, obs_dim)))
    return path


def test_robomimic_import_with_env_id_round_trips(tmp_path):
    path = _robomimic_file(tmp_path / "bimodal.hdf5", obs_dim=2)
    import_robomimic_hdf5(path, "imp/bimodal-v0", obs_keys=["pos"], env_id=BIMODAL_ID, env_kwargs={"max_step": 0.02})
    ds = minari.load_dataset("imp/bimodal-v0")
    assert ds.env_spec.id == BIMODAL_ID and dataset_requirements(ds) == ["lwd-gym"]
    assert ds.storage.metadata["lwd_import"]["env_id"] == BIMODAL_ID
    # The data's spaces stay the dataset's; the env's have the same shapes.
    assert ds.observation_space == gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    for env in (ds.recover_environment(), recover_env(ds)):
        assert env.observation_space.shape == ds.observation_space.shape and env.action_space.shape == ds.action_space.shape
        assert env.unwrapped.max_step == 0.02  # env_kwargs are in the recorded spec
        env.close()


def test_import_with_a_mismatched_env_writes_nothing(tmp_path):
    good = _robomimic_file(tmp_path / "good.hdf5", obs_dim=2)
    import_robomimic_hdf5(good, "imp/keep-v0", obs_keys=["pos"])
    bad = _robomimic_file(tmp_path / "bad.hdf5", obs_dim=3, action_dim=4)
    with pytest.raises(ValueError, match=r"'lwd_gym/Bimodal-v0' does not match.*observations are Box.*3-d.*actions are Box.*4-d"):
        import_robomimic_hdf5(bad, "imp/keep-v0", obs_keys=["pos"], env_id=BIMODAL_ID)
    kept = minari.load_dataset("imp/keep-v0")  # the existing dataset was not replaced
    assert kept.observation_space.shape == (2,) and kept.env_spec is None
    with pytest.raises(ValueError, match="env_kwargs were given without env_id"):
        import_robomimic_hdf5(good, "imp/other-v0", obs_keys=["pos"], env_kwargs={"max_step": 0.1})


def test_import_with_an_unavailable_env_writes_nothing(tmp_path, monkeypatch):
    path = _robomimic_file(tmp_path / "lift.hdf5", obs_dim=19, action_dim=7)
    monkeypatch.setitem(sys.modules, "robosuite", None)
    with pytest.raises(EnvUnavailableError, match=r"pip install 'lwd-gym\[robosuite\]'"):
        import_robomimic_hdf5(path, "imp/lift-v0", obs_keys=["pos"], env_id="lwd_gym/Lift-v0")
    assert "imp/lift-v0" not in minari.list_local_datasets()


def test_diffusion_policy_pusht_import_with_env_id_round_trips(tmp_path):
    zarr = pytest.importorskip("zarr", reason="pip install 'lwd-gym[zarr]'")
    pytest.importorskip("gym_pusht", reason="pip install 'lwd-gym[pusht]'")
    rng = np.random.default_rng(0)
    new_api = hasattr(zarr, "create_array")  # zarr 3
    root = zarr.open_group(str(tmp_path / "pusht.zarr"), mode="w", **({"zarr_format": 2} if new_api else {}))
    data, meta = root.create_group("data"), root.create_group("meta")
    create = (lambda g: g.create_array) if new_api else (lambda g: g.create_dataset)
    create(data)("state", data=rng.uniform(0, 512, size=(10, 5)))
    create(data)("action", data=rng.uniform(0, 512, size=(10, 2)))
    create(meta)("episode_ends", data=np.array([4, 10], dtype=np.int64))
    ds = import_diffusion_policy_zarr(tmp_path / "pusht.zarr", "imp/pusht-v0", env_id="gym_pusht/PushT-v0")
    assert dataset_requirements(ds) == ["lwd-gym[pusht]"]
    env = minari.load_dataset("imp/pusht-v0").recover_environment()
    assert env.spec.id == "gym_pusht/PushT-v0" and env.observation_space.shape == ds.observation_space.shape == (5,)
    env.close()
