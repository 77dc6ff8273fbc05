"""Built-in environments: the bimodal two-paths task, its scripted expert and dataset maker."""
import gymnasium

from lwd_gym.envs.bimodal import ENV_ID, BimodalEnv, BimodalExpert, make_bimodal_dataset

# Guard: re-importing (e.g. importlib.reload) must not re-register, which gymnasium warns about.
if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="lwd_gym.envs.bimodal:BimodalEnv", max_episode_steps=100)

__all__ = ["BimodalEnv", "BimodalExpert", "make_bimodal_dataset"]
