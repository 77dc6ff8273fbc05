"""Checkpoints: single safetensors file with JSON metadata; clear errors on anything else."""
import json
import re

import numpy as np
import pytest
from safetensors import safe_open

from lwd_gym import BaseAgent, LWDAgent, MLPAgent
from lwd_gym.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint


@pytest.fixture
def tiny_lwd(tiny_datasets):
    agent = LWDAgent(action_horizon=4, latent_dim=16, hypernet_size="xs", policy_hidden=(8,), denoiser_size="xs", num_inference_steps=2, device="cpu")
    return agent.learn(tiny_datasets[0], vae_steps=2, diffusion_steps=2, progress_bar=False)


def test_checkpoint_is_safetensors_with_json_config(tiny_lwd, tmp_path):
    path = tmp_path / "ckpts" / "agent.ckpt"
    tiny_lwd.save(path)
    with safe_open(str(path), framework="pt") as f:
        assert list(f.metadata()) == ["lwd_gym"]  # one key: safetensors writes a metadata map in random order
        envelope = json.loads(f.metadata()["lwd_gym"])
        meta = json.loads(envelope["header"])
        assert len(envelope["sha256"]) == 64
        assert any(k.startswith("vae.") for k in f.keys()) and any(k.startswith("diffusion.") for k in f.keys())
    assert meta["format_version"] == FORMAT_VERSION == 3 and meta["agent"] == "LWDAgent"
    assert meta["config"]["latent_dim"] == 16
    assert "latent_normalizer" in meta["extra"]
    assert [p.name for p in path.parent.iterdir()] == ["agent.ckpt"]  # no temp file left behind


def test_base_load_rebuilds_the_saved_class(tiny_lwd, tmp_path):
    tiny_lwd.save(tmp_path / "a.ckpt")
    agent = BaseAgent.load(tmp_path / "a.ckpt", device="cpu")
    assert isinstance(agent, LWDAgent)
    obs = np.zeros((2, 2), dtype=np.float32)
    tiny_lwd.set_random_seed(1)
    agent.set_random_seed(1)
    np.testing.assert_array_equal(tiny_lwd.predict(obs)[0], agent.predict(obs)[0])


def test_mlp_round_trip(tiny_datasets, tmp_path):
    agent = MLPAgent(hidden=(8,), device="cpu").learn(tiny_datasets[0], steps=3, progress_bar=False)
    agent.save(tmp_path / "mlp.ckpt")
    loaded = MLPAgent.load(tmp_path / "mlp.ckpt", device="cpu")
    obs = np.random.default_rng(0).uniform(-1, 1, (5, 2)).astype(np.float32)
    np.testing.assert_array_equal(agent.predict(obs)[0], loaded.predict(obs)[0])


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        LWDAgent.load(tmp_path / "nope.ckpt")


def test_wrong_agent_class(tiny_lwd, tmp_path):
    tiny_lwd.save(tmp_path / "a.ckpt")
    with pytest.raises(ValueError, match="holds a LWDAgent, not a MLPAgent"):
        MLPAgent.load(tmp_path / "a.ckpt")


@pytest.mark.parametrize("corrupt", ["truncate", "flip_header", "garbage", "empty"])
def test_corrupted_checkpoint_is_a_clear_error(tiny_lwd, tmp_path, corrupt):
    path = tmp_path / "a.ckpt"
    tiny_lwd.save(path)
    data = bytearray(path.read_bytes())
    if corrupt == "truncate":
        data = data[: len(data) // 2]
    elif corrupt == "flip_header":
        for i in range(8, 60):
            data[i] ^= 0xFF
    elif corrupt == "garbage":
        data = bytearray(b"not a checkpoint at all")
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="a.ckpt"):
        LWDAgent.load(path)


def test_version_2_checkpoints_still_load(tiny_lwd, tmp_path):
    """Version 2 kept the JSON and its SHA-256 under two metadata keys."""
    from safetensors.torch import save_file

    from lwd_gym.checkpoint import _digest

    tiny_lwd.save(tmp_path / "a.ckpt")
    tensors, meta = load_checkpoint(tmp_path / "a.ckpt")
    header = json.dumps({**meta, "format_version": 2})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "v2.ckpt"), metadata={"lwd_gym": header, "lwd_gym_sha256": _digest(header, tensors)})
    loaded = LWDAgent.load(tmp_path / "v2.ckpt", device="cpu")
    assert loaded.config == tiny_lwd.config
    corrupt = {k: v.clone() for k, v in tensors.items()}
    next(iter(corrupt.values())).view(-1)[0] += 1
    save_file({k: v.contiguous() for k, v in corrupt.items()}, str(tmp_path / "bad.ckpt"), metadata={"lwd_gym": header, "lwd_gym_sha256": _digest(header, tensors)})
    with pytest.raises(ValueError, match="checksum"):
        LWDAgent.load(tmp_path / "bad.ckpt", device="cpu")


def test_unknown_format_version(tiny_lwd, tmp_path, monkeypatch):
    import lwd_gym.checkpoint as ckpt

    monkeypatch.setattr(ckpt, "FORMAT_VERSION", 99)
    tiny_lwd.save(tmp_path / "a.ckpt")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="format version 99"):
        LWDAgent.load(tmp_path / "a.ckpt")


def test_weights_not_matching_config(tiny_lwd, tmp_path):
    """A checkpoint whose weights do not fit its config (e.g. edited JSON) is rejected, not half-loaded."""
    tiny_lwd.save(tmp_path / "a.ckpt")
    tensors, meta = load_checkpoint(tmp_path / "a.ckpt")
    meta["config"]["policy_hidden"] = [16]
    save_checkpoint(tmp_path / "b.ckpt", tensors, {k: v for k, v in meta.items() if k != "format_version"})
    with pytest.raises(ValueError, match="shape"):
        LWDAgent.load(tmp_path / "b.ckpt")


def _tensor_region(path):
    """Byte range of the tensor data in a safetensors file (after the 8-byte length and the JSON header)."""
    data = path.read_bytes()
    return 8 + int.from_bytes(data[:8], "little"), len(data)


@pytest.mark.parametrize("where", [0.0, 0.5, 0.999])
def test_flipped_byte_in_the_weights_is_detected(tiny_lwd, tmp_path, where):
    """safetensors does not check tensor bytes; the checkpoint's SHA-256 does."""
    path = tmp_path / "a.ckpt"
    tiny_lwd.save(path)
    begin, end = _tensor_region(path)
    data = bytearray(path.read_bytes())
    data[begin + int(where * (end - begin - 1))] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        LWDAgent.load(path)


def test_every_truncation_is_a_clear_error(tiny_lwd, tmp_path):
    path = tmp_path / "a.ckpt"
    tiny_lwd.save(path)
    data = path.read_bytes()
    for cut in np.linspace(1, len(data) - 1, 25).astype(int):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="a.ckpt"):
            LWDAgent.load(path)


def test_missing_tensors_are_named(tiny_lwd, tmp_path):
    tiny_lwd.save(tmp_path / "a.ckpt")
    tensors, meta = load_checkpoint(tmp_path / "a.ckpt")
    dropped = sorted(k for k in tensors if k.startswith("diffusion."))[0]
    del tensors[dropped]
    save_checkpoint(tmp_path / "b.ckpt", tensors, {k: v for k, v in meta.items() if k != "format_version"})
    with pytest.raises(ValueError, match=r"missing \[" + re.escape(repr(dropped.removeprefix("diffusion.")))):
        LWDAgent.load(tmp_path / "b.ckpt")


@pytest.mark.parametrize("key", ["agent", "config", "state_space", "normalizers"])
def test_missing_metadata_is_a_clear_error(tiny_lwd, tmp_path, key):
    tiny_lwd.save(tmp_path / "a.ckpt")
    tensors, meta = load_checkpoint(tmp_path / "a.ckpt")
    del meta[key]
    save_checkpoint(tmp_path / "b.ckpt", tensors, {k: v for k, v in meta.items() if k != "format_version"})
    with pytest.raises(ValueError, match=f"incomplete or invalid.*{key}"):
        LWDAgent.load(tmp_path / "b.ckpt")


def test_interrupted_save_keeps_the_old_file(tiny_lwd, tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint intact and no temporary file behind."""
    import lwd_gym.checkpoint as ckpt

    path = tmp_path / "ckpts" / "a.ckpt"
    tiny_lwd.save(path)
    before = path.read_bytes()

    def crash(tensors, filename, metadata):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        tiny_lwd.save(path)
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["a.ckpt"]
    monkeypatch.undo()
    LWDAgent.load(path)


def test_no_pickle_in_the_package():
    """Loading must never unpickle: the package uses neither pickle nor torch.load."""
    import pathlib
    import re

    import lwd_gym

    unsafe = re.compile(r"^\s*(import|from)\s+(c?pickle|cloudpickle|dill|joblib)\b|pickle\.loads?\(|torch\.load\(|np\.load\(.*allow_pickle=True", re.M)
    root = pathlib.Path(lwd_gym.__file__).parent
    for path in root.rglob("*.py"):
        assert not unsafe.search(path.read_text()), path
