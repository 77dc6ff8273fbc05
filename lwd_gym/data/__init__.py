"""Demonstration data: Minari I/O, validation, normalisers, snippets, expert collection, importers and env recovery."""
from lwd_gym.data.collect import rollout_episodes, write_minari_dataset
from lwd_gym.data.demonstrations import Demonstrations, load_demonstrations
from lwd_gym.data.importers import import_diffusion_policy_zarr, import_robomimic_hdf5
from lwd_gym.data.normalizer import Normalizer
from lwd_gym.data.recover import dataset_env_id, dataset_requirements, recover_env
from lwd_gym.data.snippets import SnippetDataset
from lwd_gym.data.sources import DemoSource, available_sources, collect, get_source, register_source

__all__ = [
    "DemoSource",
    "available_sources",
    "collect",
    "dataset_env_id",
    "dataset_requirements",
    "get_source",
    "register_source",
    "Demonstrations",
    "Normalizer",
    "SnippetDataset",
    "import_diffusion_policy_zarr",
    "import_robomimic_hdf5",
    "load_demonstrations",
    "recover_env",
    "rollout_episodes",
    "write_minari_dataset",
]
