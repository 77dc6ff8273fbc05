"""Demonstration data: Minari I/O, validation, normalisers, snippets and expert collection."""
from lwd_gym.data.collect import rollout_episodes, write_minari_dataset
from lwd_gym.data.demonstrations import Demonstrations, load_demonstrations
from lwd_gym.data.normalizer import Normalizer
from lwd_gym.data.snippets import SnippetDataset

__all__ = ["Demonstrations", "Normalizer", "SnippetDataset", "load_demonstrations", "rollout_episodes", "write_minari_dataset"]
