"""Smoke test: the HalfCheetah behaviour-reconstruction benchmark (benchmarks/behaviour.py) runs
end to end on its tiny profile, writes a JSON of the documented shape and a PNG, and resumes
from its cells.  Numbers are not checked (the tiny agents train for two steps)."""
import json
import math

import pytest

pytest.importorskip("mujoco")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_behaviour_benchmark(tmp_path, monkeypatch):
    from benchmarks import behaviour

    results = behaviour.main(["--profile", "tiny", "--out", str(tmp_path), "--threads", "1"])
    saved = json.loads((tmp_path / "behaviour-tiny.json").read_text())
    assert (tmp_path / "behaviour-tiny.png").read_bytes()[:8] == PNG_MAGIC
    cfg = behaviour.PROFILES["tiny"]
    assert saved["behaviours"] == ["expert", "medium", "random"] and saved["profile"] == "tiny"
    lwd = [f"LWD H{h}" for h in cfg["snippets"]]
    methods = ["SOS", *[f"{label} {kind}" for label in lwd for kind in ("VAE-decoded", "diffusion")], "MLP"]
    assert [r["method"] for r in saved["rows"]] == methods
    for row in saved["rows"]:
        for b in saved["behaviours"]:
            assert 0 <= row[f"js_{b}"] <= math.log(2) + 1e-9 and math.isfinite(row[f"return_{b}"])
    for method, per_behaviour in saved["cells"].items():
        n = cfg["demos"] if "VAE-decoded" in method else cfg["eval_episodes"]  # decoded: one per source trajectory
        assert len(per_behaviour) == 3 and all(len(c["fractions"]) == len(c["returns"]) == n for c in per_behaviour), method
        assert all(0 <= f <= 1 for c in per_behaviour for pair in c["fractions"] for f in pair)
    assert all(len(s["fractions"]) == cfg["demos"] for s in saved["source"])
    for label in lwd:
        latents = saved["latents"][label]
        assert len(latents["pca"]) == len(latents["labels"]) > 0 and set(latents["labels"]) == {0, 1, 2}
        assert len(saved["latent_separation"][label]) == 3
    assert saved["source_returns"]["expert"] > saved["source_returns"]["random"]  # the SAC expert runs, the random one does not
    assert results["rows"] == saved["rows"]

    # A rerun loads every trained agent and finished cell and gives the same rows.
    from lwd_gym import BaseAgent

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached agent was retrained or a cached cell recomputed")

    monkeypatch.setattr(BaseAgent, "_prepare", must_not_run)
    monkeypatch.setattr("benchmarks.behaviour.evaluate", must_not_run)
    monkeypatch.setattr("benchmarks.behaviour.reconstruction_rollout", must_not_run)
    assert behaviour.main(["--profile", "tiny", "--out", str(tmp_path), "--threads", "1"])["rows"] == saved["rows"]

    # A part of the sweep (--only) takes the other agents' rows from their committed cells without
    # training them: with every cell written, the part's result is the whole sweep's, not -partial.
    (tmp_path / "behaviour-tiny.json").unlink()
    part = behaviour.main(["--profile", "tiny", "--out", str(tmp_path), "--threads", "1", "--only", "MLP"])
    assert part["rows"] == saved["rows"] and not part["partial"]
    assert (tmp_path / "behaviour-tiny.json").exists() and not (tmp_path / "behaviour-tiny-partial.json").exists()


def test_behaviour_benchmark_part(tmp_path):
    """--only on a fresh output: the chosen agent's rows beside the sources', written as -partial."""
    from benchmarks import behaviour

    results = behaviour.main(["--profile", "tiny", "--out", str(tmp_path), "--threads", "1", "--only", "MLP"])
    saved = json.loads((tmp_path / "behaviour-tiny-partial.json").read_text())
    assert [r["method"] for r in saved["rows"]] == ["SOS", "MLP"] and saved["partial"] and saved["only"] == ["MLP"]
    assert list(saved["agents"]) == ["MLP"] and saved["latents"] == {}
    assert not (tmp_path / "behaviour-tiny.json").exists() and results["rows"] == saved["rows"]
