"""Smoke test: the UNet-vs-transformer ablation (benchmarks/denoiser.py) runs end to end on its
tiny profile in parts that add up, writes a JSON of the documented shape and a PNG, and reruns
from its evaluated cells.
Numbers are not checked."""
import json
import math

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_denoiser(tmp_path, monkeypatch):
    from benchmarks import denoiser, horizon

    # Run in parts, as the standard profile is: each part's results hold the earlier parts' agents.
    first = denoiser.main(["--profile", "tiny", "--out", str(tmp_path), "--methods", "DP", "--denoisers", "unet"])
    assert first["partial"] and {r["label"] for r in first["rows"]} == {"DP-UNet"}
    second = denoiser.main(["--profile", "tiny", "--out", str(tmp_path), "--methods", "LWD"])
    part = json.loads((tmp_path / "denoiser-pusht-partial.json").read_text())
    assert part["partial"] and {r["label"] for r in part["rows"]} == {"LWD-UNet", "LWD-Transformer", "DP-UNet"}
    assert [r for r in second["rows"] if r["label"] == "DP-UNet"] == first["rows"]
    results = denoiser.main(["--profile", "tiny", "--out", str(tmp_path), "--methods", "DP", "--denoisers", "transformer"])
    saved = json.loads((tmp_path / "denoiser-pusht.json").read_text())
    assert (tmp_path / "denoiser-pusht.png").read_bytes()[:8] == PNG_MAGIC
    assert saved["benchmark"] == "denoiser" and saved["profile"] == "tiny" and saved["action_horizon"] == 16
    assert saved["methods"] == ["LWD", "DP"] and saved["denoisers"] == ["unet", "transformer"]
    grid = {(r["method"], r["denoiser"], r["magnitude"]) for r in saved["rows"]}
    assert grid == {(m, d, mag) for m in ("LWD", "DP") for d in ("unet", "transformer") for mag in saved["magnitudes"]}
    for r in saved["rows"]:
        assert 0 <= r["success_rate"] <= 1 and 0 <= r["mean_max_reward"] <= 1 and r["episodes"] == saved["episodes_per_cell"]
        assert len(r["success_ci95"]) == 2 and r["label"] == f"{r['method']}-{'UNet' if r['denoiser'] == 'unet' else 'Transformer'}"
        assert isinstance(r["denoiser_params"], int) and r["denoiser_params"] > 0
        assert math.isfinite(r["query_ms"]) and r["query_ms"] > 0 and r["train_seconds"] >= 0
    assert len(saved["agents"]) == 4 and all(a["size"] == "xs" for a in saved["agents"])
    assert results["rows"] == saved["rows"]

    # The UNet agents are horizon.py's (same cache name); the transformer ones differ only in the denoiser.
    s = horizon.setting("pusht", "tiny")
    for method in ("LWD", "DP"):
        assert denoiser.variant(s, method, "unet") is s
        kwargs = denoiser.variant(s, method, "transformer").agent_kwargs[method]
        assert kwargs == dict(s.agent_kwargs[method], denoiser="transformer")
    cache = tmp_path / "cache" / "denoiser-pusht-tiny"
    assert (cache / f"{horizon.agent_key('LWD', 16, 0, s)}.ckpt").exists()

    # A rerun reports every agent from its evaluated cells and info: nothing is trained, loaded or evaluated.
    from lwd_gym import BaseAgent

    def must_not_run(*args, **kwargs):
        raise AssertionError("an agent with cells and info was retrained, loaded or re-evaluated")

    monkeypatch.setattr(BaseAgent, "_prepare", must_not_run)
    monkeypatch.setattr(BaseAgent, "load", must_not_run)
    monkeypatch.setattr("benchmarks.horizon.evaluate", must_not_run)
    rerun = denoiser.main(["--profile", "tiny", "--out", str(tmp_path)])
    assert rerun["rows"] == results["rows"] and rerun["agents"] == results["agents"]
    assert not saved["partial"]


def test_denoiser_standard_shares_the_horizon_sweeps_agents(tmp_path):
    """At the standard profile the UNet agents are horizon.py's standard ones at H_a 16 (LWD with the
    VAE-budget probe's steps, the very agent benchmarks.samplers samples), in that sweep's cache,
    cells and logs, so none is trained twice; the transformer agents are keyed apart."""
    from benchmarks import denoiser, horizon, samplers

    s = denoiser.profile_setting("standard")
    assert horizon.agent_key("LWD", 16, 0, denoiser.variant(s, "LWD", "unet")) == horizon.agent_key("LWD", 16, 0, samplers.horizon_setting())
    plain = horizon.setting("pusht", "standard")
    assert horizon.agent_key("DP", 16, 0, denoiser.variant(s, "DP", "unet")) == horizon.agent_key("DP", 16, 0, plain)
    for method in ("LWD", "DP"):
        assert horizon.agent_key(method, 16, 0, denoiser.variant(s, method, "transformer")) != horizon.agent_key(method, 16, 0, s)
    run = "horizon-pusht-standard"
    assert denoiser.locations("standard", str(tmp_path)) == (tmp_path / "cache" / run, tmp_path / "cells" / run, tmp_path / "logs" / run)
    assert denoiser.locations("quick", str(tmp_path))[2] is None


def test_denoiser_transformer_size_probe(tmp_path):
    """``--transformer-size`` trains transformers of another preset against the same UNets, labels
    them with the size, and writes its own result file beside the grid's."""
    from benchmarks import denoiser, horizon

    results = denoiser.main(["--profile", "tiny", "--out", str(tmp_path), "--methods", "LWD", "--transformer-size", "s"])
    assert (tmp_path / "denoiser-pusht-transformer-s-partial.json").exists()
    assert not list(tmp_path.glob("denoiser-pusht.json")) and not list(tmp_path.glob("denoiser-pusht-partial.json"))
    assert results["partial"] and results["transformer_size"] == "s"  # the DP agents of the probe are not trained
    assert {r["label"] for r in results["rows"]} == {"LWD-UNet", "LWD-Transformer-s"}
    agents = {a["label"]: a for a in results["agents"]}
    assert agents["LWD-Transformer-s"]["size"] == "s" and agents["LWD-UNet"]["size"] == "xs"

    # The probe's UNet is the grid's (same key); its transformer is a different agent from the grid's xs one.
    s = horizon.setting("pusht", "tiny")
    unet = horizon.agent_key("LWD", 16, 0, denoiser.variant(s, "LWD", "unet", "s"))
    assert unet == horizon.agent_key("LWD", 16, 0, s)
    probe = denoiser.variant(s, "LWD", "transformer", "s")
    assert probe.agent_kwargs["LWD"] == dict(s.agent_kwargs["LWD"], denoiser="transformer", denoiser_size="s")
    assert horizon.agent_key("LWD", 16, 0, probe) != horizon.agent_key("LWD", 16, 0, denoiser.variant(s, "LWD", "transformer"))
    # DP's own preset at the standard profile is s: there the probe's DP transformer is the grid's agent.
    std = denoiser.profile_setting("standard")
    assert denoiser.variant(std, "DP", "transformer", "s") == denoiser.variant(std, "DP", "transformer")
    assert denoiser.label("LWD", "transformer", "s") == "LWD-Transformer-s" and denoiser.label("DP", "unet") == "DP-UNet"
