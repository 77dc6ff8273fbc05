"""Smoke test: the latent behaviour analysis (benchmarks/latents.py) runs end to end on its tiny
profile and writes a JSON of the documented shape and a PNG.  Scores are not checked."""
import json
import math

import pytest

pytest.importorskip("robosuite")
pytest.importorskip("sklearn")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_latents(tmp_path):
    from benchmarks import latents

    results = latents.main(["--profile", "tiny", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "latents.json").read_text())
    assert (tmp_path / "latents.png").read_bytes()[:8] == PNG_MAGIC
    assert saved["benchmark"] == "latents" and saved["profile"] == "tiny" and saved["machine"]["cpu_cores"] >= 1
    assert len(saved["operators"]) == 6 and saved["proficiency_levels"] == ["better", "okay", "worse"]
    per_operator = saved["config"]["episodes_per_operator"]
    assert all(c["episodes"] == per_operator and c["snippets"] >= c["episodes"] for c in saved["counts"].values())
    keys = {(r["level"], r["features"], r["space"]) for r in saved["rows"]}
    assert keys == {(lv, f, s) for lv in ("snippet", "episode") for f in ("latent", "raw") for s in ("full", "pca", "tsne")}
    n_snippets = sum(c["snippets"] for c in saved["counts"].values())
    for r in saved["rows"]:
        assert r["n"] == (n_snippets if r["level"] == "snippet" else 6 * per_operator), r
        assert r["dim"] == 2 or r["space"] == "full"
        for label in ("operator", "proficiency"):
            for key in (f"{label}_silhouette", f"{label}_silhouette_shuffled"):
                assert math.isfinite(r[key]) and -1 <= r[key] <= 1, (key, r)
            for key in (f"{label}_knn", f"{label}_knn_shuffled"):
                assert 0 <= r[key] <= 1, (key, r)
    emb = saved["embeddings"]
    assert len(emb["operator"]) == len(emb["proficiency"]) == n_snippets
    for key in ("latent-pca", "latent-tsne", "raw-pca", "raw-tsne"):
        assert len(emb[key]) == n_snippets and all(len(p) == 2 for p in emb[key])
    assert all(t >= 0 for t in saved["seconds"].values())
    assert results["rows"] == saved["rows"]
    # The VAE's learning curve is kept: one row per step, with the held-out loss.
    (curve,) = (tmp_path / "logs" / "latents-tiny").glob("*/vae.csv")
    lines = curve.read_text().splitlines()
    assert "val_loss" in lines[0].split(",") and len(lines) - 1 == latents.PROFILES["tiny"].vae_steps
    assert list((tmp_path / "cache").glob("latents-tiny-*.ckpt"))  # the trained agent is cached for reruns

    # A rerun reuses the dataset and the cached agent, and gives the same scores.
    again = latents.main(["--profile", "tiny", "--out", str(tmp_path)])
    assert again["rows"] == saved["rows"]
