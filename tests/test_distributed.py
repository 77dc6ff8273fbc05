"""torchrun with 2 CPU processes (gloo) trains like 1 process with the same effective batch."""
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from lwd_gym import BaseAgent, distributed

# The agents both runs train; the torchrun script and this test execute the same source.
AGENTS = textwrap.dedent(
    """
    from lwd_gym import DPAgent, LWDAgent, MLPAgent

    STEPS = {"lwd": dict(vae_steps=8, diffusion_steps=8), "dp": dict(steps=8), "mlp": dict(steps=8)}

    def make_agent(name):
        if name == "lwd":
            return LWDAgent(action_horizon=4, latent_dim=16, hypernet_size="xs", policy_hidden=(8,), denoiser_size="xs",
                            num_inference_steps=2, batch_size=15, device="cpu", seed=2)
        if name == "dp":
            return DPAgent(action_horizon=4, prediction_horizon=8, denoiser_size="xs", num_inference_steps=2, batch_size=15, device="cpu", seed=2)
        return MLPAgent(hidden=(16,), batch_size=15, device="cpu", seed=2)
    """
)
_agents: dict = {}
exec(AGENTS, _agents)
STEPS, make_agent = _agents["STEPS"], _agents["make_agent"]

SCRIPT = AGENTS + textwrap.dedent(
    """
    import sys
    import torch.distributed as dist
    import lwd_gym.checkpoint as ckpt

    original = ckpt.save_file
    def logged_save_file(tensors, filename, metadata=None):
        print(f"WRITE rank={dist.get_rank()} {filename}", flush=True)
        return original(tensors, filename, metadata=metadata)
    ckpt.save_file = logged_save_file

    name, out, ckpt_dir = sys.argv[1:4]
    agent = make_agent(name).learn("lwd/ddp-v0", **STEPS[name], checkpoint_dir=ckpt_dir, checkpoint_every=4, progress_bar=False)
    agent.save(out)
    print(f"RANK {dist.get_rank()} of {dist.get_world_size()} done", flush=True)
    """
)


@pytest.fixture
def ddp_dataset():
    from lwd_gym.envs import make_bimodal_dataset

    return make_bimodal_dataset(6, seed=0, dataset_id="lwd/ddp-v0", progress=False)


@pytest.mark.parametrize("name", ["lwd", "dp", "mlp"])
def test_two_gloo_processes_train_like_one(ddp_dataset, tmp_path, minari_dir, name):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out, ckpt_dir = tmp_path / "agent.ckpt", tmp_path / "ckpt"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(minari_dir)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script), name, str(out), str(ckpt_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "RANK 0 of 2 done" in proc.stdout and "RANK 1 of 2 done" in proc.stdout
    writes = [line for line in proc.stdout.splitlines() if line.startswith("WRITE")]
    assert writes and all(line.startswith("WRITE rank=0 ") for line in writes), writes

    two = BaseAgent.load(out, device="cpu")
    one = make_agent(name).learn(ddp_dataset, **STEPS[name], progress_bar=False)
    init = make_agent(name)
    init._prepare(ddp_dataset, progress_bar=False)  # the seeded initial weights both runs start from
    for (module_name, m1), m2, m0 in zip(one._modules().items(), two._modules().values(), init._modules().values()):
        w1, w2, w0 = (torch.cat([v.flatten() for v in m.state_dict().values()]) for m in (m1, m2, m0))
        # Relative to how far training moved the weights: Adam moves a weight with a ~0 gradient
        # by ~lr whatever its sign, so float summation order can flip single elements; the
        # whole update must agree (measured: ~1e-6 for LWD, ~1e-3 for DP).
        assert (w2 - w1).norm() <= 1e-2 * (w1 - w0).norm(), module_name
    np.testing.assert_array_equal(one.obs_normalizer.mean, two.obs_normalizer.mean)


def test_one_process_uses_the_whole_batch():
    index = torch.arange(15)
    share, scale = distributed.shard(index)
    assert torch.equal(share, index) and scale == 1.0
    values, mask = torch.arange(6.0), torch.tensor([1, 1, 0, 1, 0, 0], dtype=torch.bool)
    assert distributed.masked_mean(values, mask).item() == pytest.approx((0 + 1 + 3) / 3)
    assert distributed.masked_mean(values, torch.zeros(6, dtype=torch.bool)).item() == 0.0  # not NaN
    distributed.clear_shard()
    assert distributed.world_size() == 1 and distributed.is_main_process()


def test_cli_train_resumes_and_reports_bad_arguments(ddp_dataset, tmp_path, capsys):
    from lwd_gym import MLPAgent
    from lwd_gym.cli import main

    out = tmp_path / "mlp.ckpt"
    args = ["train", "mlp", "lwd/ddp-v0", "--out", str(out), "--set", "hidden=[16]", "batch_size=16", "--learn", "steps=12", "--quiet"]
    assert main([*args, "--checkpoint-dir", str(tmp_path / "state"), "--checkpoint-every", "5"]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "state" / "bc.safetensors").exists()
    agent = MLPAgent.load(out)
    assert agent.hidden == (16,) and agent.batch_size == 16
    for bad, message in [(["--set", "hiden=3"], "--set: .*hiden"), (["--learn", "vae_steps=3"], r"--learn: MLPAgent.learn\(\) has no option"), (["--set", "oops"], "KEY=VALUE")]:
        with pytest.raises(SystemExit):
            main(["train", "mlp", "lwd/ddp-v0", "--out", str(out), "--quiet", *bad])
        assert re.search(message, capsys.readouterr().err)
