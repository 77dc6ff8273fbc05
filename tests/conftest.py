"""Shared fixtures: every test writes Minari data under its own tmp dir; one trained LWD agent per session."""
import os

import pytest

#: Modules that train agents to competence: scheduled first, so the parallel workers' last
#: minutes are spent on short tests rather than one long training alone.
LEARNING_MODULES = ("test_baselines.py", "test_lwd_agent.py", "test_world_model.py", "test_task_following.py", "test_transformer_denoiser.py")


def pytest_configure(config):
    """Under pytest-xdist, split the cores between the workers: two torch processes with two
    threads each on two cores thrash.  A thread count set by the user (OMP_NUM_THREADS) wins."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)  # subprocesses (CLI, torchrun tests) too
        import torch

        torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.path.name not in LEARNING_MODULES)  # stable: order kept otherwise


@pytest.fixture(autouse=True)
def minari_dir(tmp_path, monkeypatch):
    """Keep Minari datasets inside the test's tmp dir (never the user's ~/.minari)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


@pytest.fixture(scope="session")
def session_minari_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("minari-session")


@pytest.fixture(scope="session")
def bimodal_dataset(session_minari_dir):
    from lwd_gym.envs import make_bimodal_dataset

    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(session_minari_dir)
    try:
        yield make_bimodal_dataset(200, seed=0, progress=False)
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH")
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


@pytest.fixture(scope="session")
def trained_lwd(bimodal_dataset):
    """LWD trained on the two-paths demonstrations with the demo's settings."""
    from lwd_gym.demo import DEMO_STEPS, demo_agents

    return demo_agents(seed=0, device="cpu")["LWD"].learn(bimodal_dataset, progress_bar=False, **DEMO_STEPS["LWD"])


@pytest.fixture
def tiny_datasets():
    """Two 5-episode task datasets of the two-paths expert (cheap inputs for shape/error tests)."""
    from lwd_gym.envs import make_bimodal_dataset

    return [
        make_bimodal_dataset(5, seed=0, dataset_id="lwd/tiny/left-v0", side=-1, progress=False),
        make_bimodal_dataset(5, seed=1, dataset_id="lwd/tiny/right-v0", side=1, progress=False),
    ]
