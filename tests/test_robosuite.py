"""robosuite Lift / Can envs, their multi-operator experts and the end-effector perturbation wrapper."""
import subprocess
import sys
import warnings

import gymnasium as gym
import minari
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

pytest.importorskip("robosuite", reason="robosuite is not installed: pip install 'lwd-gym[robosuite]'")

from lwd_gym.data.sources import collect, get_source  # noqa: E402
from lwd_gym.envs.robosuite import (  # noqa: E402
    CAN_ID,
    LIFT_ID,
    OBS_KEYS,
    OPERATORS,
    PROFICIENCY_LEVELS,
    RobosuiteEnv,
    RobosuiteExpert,
)
from lwd_gym.wrappers.end_effector import EndEffectorPerturbation  # noqa: E402

PERTURBATION_KEYS = {"perturbed", "perturbation_start", "perturbation_offset", "perturbation_rotation"}


@pytest.fixture(scope="module")
def lift_env():
    env = gym.make(LIFT_ID)
    yield env
    env.close()


@pytest.fixture(scope="module")
def can_env():
    env = gym.make(CAN_ID)
    yield env
    env.close()


def _run_expert(env: gym.Env, expert: RobosuiteExpert, seed: int) -> tuple[bool, int]:
    """One episode of ``expert``; (success, length)."""
    obs, info = env.reset(seed=seed)
    expert.reset(np.random.default_rng(seed))
    keys = set(info)
    for t in range(1, 10_000):
        obs, _, terminated, truncated, info = env.step(expert(obs))
        assert set(info) == keys
        if terminated or truncated:
            return bool(info["is_success"]), t
    raise AssertionError("the time limit did not end the episode")


# -- the envs ---------------------------------------------------------------------------------
def test_registered():
    for env_id, task, steps in ((LIFT_ID, "lift", 400), (CAN_ID, "can", 500)):
        spec = gym.spec(env_id)
        assert spec.entry_point == "lwd_gym.envs.robosuite:RobosuiteEnv" and spec.max_episode_steps == steps
        assert spec.kwargs == {"task": task}


def test_ids_and_sources_do_not_import_robosuite():
    code = (
        "import sys, gymnasium, lwd_gym.envs\n"
        "from lwd_gym.envs.robosuite import demo_sources\n"
        "assert [s.name for s in demo_sources()] == ['robosuite/lift', 'robosuite/can']\n"
        "assert 'lwd_gym/Lift-v0' in gymnasium.registry and 'robosuite' not in sys.modules, sorted(sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_missing_robosuite_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "robosuite", None)  # makes `import robosuite` fail
    with pytest.raises(ImportError, match=r"pip install 'lwd-gym\[robosuite\]'"):
        RobosuiteEnv("lift")
    with pytest.raises(ImportError, match=r"pip install 'lwd-gym\[robosuite\]'"):
        gym.make(CAN_ID)


def test_bad_task():
    with pytest.raises(ValueError, match="unknown robosuite task"):
        RobosuiteEnv("stack")


@pytest.mark.parametrize("which, size, object_size", [("lift", 19, 10), ("can", 23, 14)])
def test_observation_layout(which, size, object_size, lift_env, can_env):
    env = {"lift": lift_env, "can": can_env}[which]
    obs, info = env.reset(seed=0)
    assert env.observation_space.shape == (size,) and obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert env.action_space.shape == (7,) and info == {"is_success": False}
    base = env.unwrapped
    assert list(base.obs_slices) == list(OBS_KEYS)
    raw = base.robosuite_env._get_observations(force_update=True)
    for key, where in base.obs_slices.items():
        np.testing.assert_allclose(obs[where], raw[key], rtol=1e-6, atol=1e-6)
    assert obs[base.obs_slices["object-state"]].size == object_size
    np.testing.assert_allclose(base.eef_action_scale, [0.05] * 3 + [0.5] * 3)


@pytest.mark.parametrize("which", ["lift", "can"])
def test_reset_is_reproducible(which, lift_env, can_env):
    env = {"lift": lift_env, "can": can_env}[which]
    first, _ = env.reset(seed=7)
    for _ in range(15):  # moving the arm and object in between must not leak into the next episode
        env.step(env.action_space.sample())
    again, _ = env.reset(seed=7)
    np.testing.assert_array_equal(first, again)
    other, _ = env.reset(seed=8)
    obj = env.unwrapped.obs_slices["object-state"]
    assert not np.allclose(first[obj], other[obj])  # a different object placement
    assert not np.array_equal(env.reset()[0], env.reset()[0])  # unseeded resets differ


def test_same_actions_give_the_same_episode(lift_env):
    actions = np.random.default_rng(0).uniform(-1, 1, (20, 7)).astype(np.float32)

    def episode():
        obs = [lift_env.reset(seed=3)[0]]
        obs += [lift_env.step(a)[0] for a in actions]
        return np.array(obs)

    np.testing.assert_array_equal(episode(), episode())


def test_check_env(lift_env):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(lift_env.unwrapped, skip_render_check=True, skip_close_check=True)
    # The only complaint allowed: the unbounded observation Box (as in MuJoCo's own envs).
    assert all("infinity" in str(w.message) for w in caught), [str(w.message) for w in caught]


# -- experts and operators --------------------------------------------------------------------
def test_operators():
    assert len(OPERATORS) == 6 and len({op.name for op in OPERATORS}) == 6
    assert [op.proficiency_id for op in OPERATORS] == [0, 0, 1, 1, 2, 2]
    assert PROFICIENCY_LEVELS == ("better", "okay", "worse")


@pytest.mark.parametrize("which, operator, seed", [("lift", "better-1", 0), ("lift", "worse-2", 1), ("can", "better-1", 0), ("can", "okay-2", 1)])
def test_expert_succeeds(which, operator, seed, lift_env, can_env):
    env = {"lift": lift_env, "can": can_env}[which]
    expert = RobosuiteExpert(env, operator=operator)
    success, length = _run_expert(env, expert, seed)
    assert success, f"{operator} failed {which} (seed {seed}, {length} steps)"
    assert expert.operator.name == operator


def test_operator_styles_differ(lift_env):
    # Same scene, a fast and a slow operator: the slow one takes clearly longer.
    _, fast = _run_expert(lift_env, RobosuiteExpert(lift_env, operator=0), seed=2)
    _, slow = _run_expert(lift_env, RobosuiteExpert(lift_env, operator=4), seed=2)
    assert slow > 1.5 * fast


def test_expert_draws_operators_from_rng(lift_env):
    expert = RobosuiteExpert(lift_env)
    rng = np.random.default_rng(0)
    drawn = []
    for _ in range(60):
        expert.reset(rng)
        drawn.append(expert.operator_id)
        assert expert.proficiency_id == OPERATORS[expert.operator_id].proficiency_id
    assert set(drawn) == set(range(6))
    replay, rng = RobosuiteExpert(lift_env), np.random.default_rng(0)
    replayed = []
    for _ in range(60):
        replay.reset(rng)
        replayed.append(replay.operator_id)
    assert replayed == drawn


def test_expert_bad_args(lift_env):
    with pytest.raises(ValueError, match="unknown operator"):
        RobosuiteExpert(lift_env, operator="expert")
    with pytest.raises(ValueError, match="operator must be"):
        RobosuiteExpert(lift_env, operator=6)
    with pytest.raises(TypeError, match="RobosuiteEnv"):
        RobosuiteExpert(gym.make("lwd_gym/Bimodal-v0"))


def test_collect_writes_operator_ids(lift_env):
    source = get_source("robosuite/lift")
    assert source.dataset_id == "lwd/robosuite-lift/mh-v0" and source.extra == "robosuite"
    assert get_source("robosuite/can").dataset_id == "lwd/robosuite-can/mh-v0"
    _, success_rate = collect("robosuite/lift", 1, seed=0, progress=False)
    assert success_rate == 1.0
    dataset = minari.load_dataset("lwd/robosuite-lift/mh-v0")
    episode = next(dataset.iterate_episodes())
    operator = episode.infos["operator_id"]
    assert operator.shape == (len(episode.observations),) and np.all(operator == operator[0]) and 0 <= operator[0] < 6
    np.testing.assert_array_equal(episode.infos["proficiency"], OPERATORS[int(operator[0])].proficiency_id)
    assert episode.infos["is_success"][-1] and episode.observations.shape[1] == 19
    # The collecting env was another instance: reset(seed=0) must give the same first observation.
    np.testing.assert_array_equal(episode.observations[0], lift_env.reset(seed=0)[0])


# -- EndEffectorPerturbation ------------------------------------------------------------------
class FakeArm(gym.Env):
    """Lift-like action layout (7, delta pose + gripper) where the "arm" moves exactly as
    commanded; records the actions it receives."""

    def __init__(self) -> None:
        self.action_space = gym.spaces.Box(-1.0, 1.0, (7,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (6,), np.float32)
        self.eef_action_scale = np.array([0.05] * 3 + [0.5] * 3)
        self.received: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pose = np.zeros(6)
        return self.pose.astype(np.float32), {"is_success": False}

    def step(self, action):
        self.received.append(np.array(action))
        self.pose = self.pose + np.asarray(action[:6], np.float64) * self.eef_action_scale
        return self.pose.astype(np.float32), 0.0, False, False, {"is_success": False}


def _rollout(env: gym.Env, seed: int, steps: int, actions: np.ndarray | None = None) -> list[dict]:
    _, info = env.reset(seed=seed)
    infos = [info]
    for t in range(steps):
        action = np.zeros(7, np.float32) if actions is None else actions[t % len(actions)]
        infos.append(env.step(action)[4])
    return infos


def test_perturbation_is_reproducible():
    env = EndEffectorPerturbation(FakeArm(), p=0.2, magnitude=0.05, max_rotation=0.3, duration=3)
    actions = np.random.default_rng(0).uniform(-1, 1, (50, 7)).astype(np.float32)
    a = [np.concatenate([i["perturbation_offset"], i["perturbation_rotation"]]) for i in _rollout(env, 5, 200, actions)]
    b = [np.concatenate([i["perturbation_offset"], i["perturbation_rotation"]]) for i in _rollout(env, 5, 200, actions)]
    c = [np.concatenate([i["perturbation_offset"], i["perturbation_rotation"]]) for i in _rollout(env, 6, 200, actions)]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_perturbation_rate_is_p():
    p, steps = 0.15, 20_000
    infos = _rollout(EndEffectorPerturbation(FakeArm(), p=p, duration=4), 0, steps)[1:]
    starts = sum(i["perturbation_start"] for i in infos)
    eligible = starts + sum(not i["perturbed"] for i in infos)  # steps with none under way
    assert abs(starts / eligible - p) < 4 * np.sqrt(p * (1 - p) / eligible)
    # Every perturbation lasts exactly `duration` steps when nothing holds it back.
    assert sum(i["perturbed"] for i in infos) == pytest.approx(4 * starts, abs=4)
    assert all(set(i) == PERTURBATION_KEYS | {"is_success"} for i in infos)


@pytest.mark.parametrize("agent", ["idle", "random", "saturating"])
def test_perturbation_offset_totals_magnitude_within_bounds(agent):
    fake = FakeArm()
    env = EndEffectorPerturbation(fake, p=0.3, magnitude=0.04, max_rotation=0.5, duration=4)
    rng = np.random.default_rng(1)
    actions = {
        "idle": np.zeros((1, 7)),
        "random": rng.uniform(-0.7, 0.7, (100, 7)),
        "saturating": np.ones((1, 7)),  # leaves no room in + directions: offsets get carried over
    }[agent].astype(np.float32)
    infos = _rollout(env, 0, 400, actions)[1:]
    received = np.array(fake.received)
    assert np.all(np.abs(received) <= 1.0)
    totals, current = [], None
    for info in infos:
        if info["perturbation_start"]:
            current = np.zeros(6)
            totals.append(current)
        if info["perturbed"]:
            current += np.concatenate([info["perturbation_offset"], info["perturbation_rotation"]])
        else:
            assert not np.any(info["perturbation_offset"]) and not np.any(info["perturbation_rotation"])
    assert len(totals) > 10
    complete = totals[:-1]  # the last one may be cut off by the end of the rollout
    norms = np.linalg.norm(np.array(complete)[:, :3], axis=1)
    angles = np.linalg.norm(np.array(complete)[:, 3:], axis=1)
    if agent == "saturating":
        # Only the offsets' negative components get through; never more than drawn.
        assert np.all(norms <= 0.04 + 1e-9) and np.all(angles <= 0.5 + 1e-9) and norms.mean() > 0.01
        assert np.all(np.array(complete) <= 1e-12)
    else:
        np.testing.assert_allclose(norms, 0.04, rtol=1e-9)
        assert np.all(angles <= 0.5 + 1e-9) and angles.std() > 0
        # The agent's own command passes through unchanged on top of the offset.
        deltas = received[:, :6] - np.resize(actions, received.shape)[:, :6]
        applied = np.array([np.concatenate([i["perturbation_offset"], i["perturbation_rotation"]]) for i in infos])
        np.testing.assert_allclose(deltas * fake.eef_action_scale, applied, atol=1e-6)


def test_perturbation_bad_args():
    for kwargs, message in (
        ({"p": -0.1}, "p must be"),
        ({"p": 1.5}, "p must be"),
        ({"magnitude": -0.01}, "magnitude must be"),
        ({"magnitude": float("nan")}, "magnitude must be"),
        ({"max_rotation": -1.0}, "max_rotation must be"),
        ({"duration": 0}, "duration must be"),
        ({"duration": -3}, "duration must be"),
        ({"duration": 2.5}, "duration must be"),
        ({"magnitude": 0.2, "duration": 2}, "raise duration to at least 4"),
    ):
        with pytest.raises(ValueError, match=message):
            EndEffectorPerturbation(FakeArm(), **kwargs)
    with pytest.raises(ValueError, match="eef_action_scale"):
        EndEffectorPerturbation(gym.make("lwd_gym/Bimodal-v0"))


def test_perturbation_moves_the_real_gripper(lift_env):
    env = EndEffectorPerturbation(lift_env, p=1.0, magnitude=0.05, duration=5)
    obs, info = env.reset(seed=0)
    assert PERTURBATION_KEYS <= set(info) and not info["perturbed"]
    start, commanded = obs[:3].copy(), np.zeros(3)
    for _ in range(5):
        obs, *_, info = env.step(np.zeros(7, np.float32))
        assert info["perturbed"]
        commanded += info["perturbation_offset"]
    assert np.linalg.norm(commanded) == pytest.approx(0.05)
    moved = obs[:3] - start
    # Through the OSC the gripper follows the push, by a fraction of the commanded offset.
    assert moved @ commanded / np.linalg.norm(commanded) ** 2 > 0.1
