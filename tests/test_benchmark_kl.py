"""Smoke test: the KL-coefficient ablation (benchmarks/kl.py) runs end to end on its tiny profile,
writes a JSON of the documented shape and a PNG, and resumes from its cache.  Numbers are not
checked (the tiny agents train for two steps)."""
import json
import math

import pytest

pytest.importorskip("gym_pusht")
pytest.importorskip("sklearn")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _finite(x, low=-math.inf):
    return isinstance(x, (int, float)) and math.isfinite(x) and x >= low


def test_kl(tmp_path, monkeypatch):
    from benchmarks import kl

    results = kl.main(["--profile", "tiny", "--out", str(tmp_path), "--threads", "1"])
    saved = json.loads((tmp_path / "kl.json").read_text())
    assert (tmp_path / "kl.png").read_bytes()[:8] == PNG_MAGIC
    assert saved["benchmark"] == "kl" and saved["profile"] == "tiny" and saved["machine"]["cpu_cores"] >= 1
    cfg = kl.PROFILES["tiny"]
    assert saved["kl_coefs"] == list(cfg.kl_coefs) and saved["train_seeds"] == list(cfg.train_seeds)
    assert "kl_coef" not in saved["agent_kwargs"]  # the swept value lives in the rows
    assert [r["kl_coef"] for r in saved["rows"]] == saved["kl_coefs"]
    assert len(saved["runs"]) == len(saved["kl_coefs"]) * len(saved["train_seeds"])
    latent_dim = saved["agent_kwargs"]["latent_dim"]
    for r in saved["runs"]:
        assert r["train_windows"] > 0 and r["heldout_windows"] > 0 and _finite(r["train_seconds"], 0)
    for r in saved["rows"]:
        for key in ("heldout_bc_sample", "heldout_bc_mean", "heldout_kl", "train_bc_sample", "train_bc_mean", "train_kl", "mean_spread"):
            assert _finite(r[key], 0), (key, r)
        assert _finite(r["posterior_std"]) and r["posterior_std"] > 0 and _finite(r["spread_over_std"], 0)
        assert 1 <= r["pca_dims_90"] <= latent_dim and 1 <= r["participation_ratio"] <= latent_dim + 1e-6
        assert 0 <= r["success_rate"] <= 1 and 0 <= r["mean_max_reward"] <= 1 and _finite(r["max_reward_sem"], 0)
        low, high = r["success_ci95"]
        assert 0 <= low <= r["success_rate"] <= high <= 1
        assert r["episodes"] == saved["episodes_per_cell"] * len(saved["train_seeds"])
    assert set(saved["embeddings"]) == {f"{k:g}" for k in saved["kl_coefs"]}
    for e in saved["embeddings"].values():
        assert len(e["pca"]) == len(e["step"]) > 0 and all(len(p) == 2 for p in e["pca"])
        assert all(s % saved["horizon"] == 0 for s in e["step"])  # non-overlapping snippets only
    assert results["rows"] == saved["rows"]

    # A rerun loads every trained agent and evaluated cell from the cache and gives the same rows.
    from lwd_gym import BaseAgent

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached agent was retrained or a cached cell re-evaluated")

    monkeypatch.setattr(BaseAgent, "_prepare", must_not_run)  # every learn() starts here
    monkeypatch.setattr("benchmarks.horizon.evaluate", must_not_run)
    again = kl.main(["--profile", "tiny", "--out", str(tmp_path), "--threads", "1"])
    assert again["rows"] == saved["rows"]
    # Learning curves are kept per agent; evaluated cells and measured metrics outside the git-ignored cache.
    assert len(list((tmp_path / "logs" / "kl-pusht-tiny").glob("*/vae.csv"))) == len(cfg.kl_coefs)
    cells = tmp_path / "cells" / "kl-pusht-tiny"
    assert len(list(cells.glob("*-metrics-*.json"))) == len(cfg.kl_coefs) and len(list(cells.glob("*.json"))) == 2 * len(cfg.kl_coefs)
    # A fresh checkout (committed cells and curves, no cache) assembles the same rows and plot
    # without demonstrations or agents.
    import shutil

    shutil.rmtree(tmp_path / "cache")
    monkeypatch.setattr("benchmarks.common.demonstrations", must_not_run)
    fresh = kl.main(["--profile", "tiny", "--out", str(tmp_path), "--threads", "1"])
    assert fresh["rows"] == saved["rows"] and fresh["embeddings"] == saved["embeddings"] and not fresh["partial"]
    # A part of the sweep (--kl-coefs) adds up with the committed cells of the others: without
    # the last beta_KL's cells it shows the rest and says "partial".
    for path in cells.glob(f"{horizon_key(kl, cfg.kl_coefs[0])}*"):
        path.unlink()
    part = kl.main(["--profile", "tiny", "--out", str(tmp_path), "--threads", "1", "--kl-coefs", f"{cfg.kl_coefs[-1]}"])
    assert part["partial"] and [r["kl_coef"] for r in part["rows"]] == list(cfg.kl_coefs[1:])
    assert part["rows"] == saved["rows"][1:] and (tmp_path / "kl-partial.json").exists()


def horizon_key(kl, kl_coef):
    """The cache key (and cell-file prefix) of the tiny profile's training-seed-0 agent for ``kl_coef``."""
    cfg = kl.PROFILES["tiny"]
    return kl.horizon.agent_key(kl.METHOD, cfg.horizon, 0, kl.kl_setting("tiny", cfg, kl_coef))


def test_kl_standard_profile_trains_the_vae_its_own_budget():
    """The standard profile's VAE budget reaches the agents (and their cache keys); the rest is
    horizon.py's standard LWD."""
    from benchmarks import horizon, kl

    cfg = kl.PROFILES["standard"]
    s = kl.kl_setting("standard", cfg, 1e-7)
    base = horizon.setting("pusht", "standard")
    assert s.train_steps == {**base.train_steps, "vae_steps": cfg.vae_steps} and cfg.vae_steps != base.train_steps["vae_steps"]
    assert s.agent_kwargs["LWD"] == base.agent_kwargs["LWD"] and s.eval_every == base.eval_every
    unchanged = kl.kl_setting("standard", kl.dataclasses.replace(cfg, vae_steps=None), 1e-7)
    assert horizon.agent_key("LWD", cfg.horizon, 0, s) != horizon.agent_key("LWD", cfg.horizon, 0, unchanged)
    with pytest.raises(ValueError, match="vae_steps"):
        kl.kl_setting("paper", kl.dataclasses.replace(kl.PROFILES["paper"], vae_steps=10), 1e-7)
