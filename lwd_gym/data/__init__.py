"""Demonstration data: Minari I/O, validation, normalisers, snippets, expert collection and importers."""
from lwd_gym.data.collect import rollout_episodes, write_minari_dataset
from lwd_gym.data.demonstrations import Demonstrations, load_demonstrations
from lwd_gym.data.importers import import_diffusion_policy_zarr, import_robomimic_hdf5
from lwd_gym.data.normalizer import Normalizer
from lwd_gym.data.snippets import SnippetDataset

__all__ = [
    "Demonstrations",
    "Normalizer",
    "SnippetDataset",
    "import_diffusion_policy_zarr",
    "import_robomimic_hdf5",
    "load_demonstrations",
    "rollout_episodes",
    "write_minari_dataset",
]
