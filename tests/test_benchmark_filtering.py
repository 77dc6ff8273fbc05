"""Smoke test: the Lift behaviour-filtering benchmark (benchmarks/filtering.py) runs end to end
on its tiny profile, shares the horizon benchmark's agent and unfiltered cell, labels the
demonstrations by proficiency, writes its JSON and PNG, and resumes from its cells.  Numbers
are not checked (the tiny agent trains for two steps)."""
import json

import numpy as np
import pytest

pytest.importorskip("robosuite")
pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_filtering_benchmark(tmp_path, monkeypatch):
    from benchmarks import filtering, horizon

    results = filtering.main(["--profile", "tiny", "--out", str(tmp_path), "--threads", "1"])
    saved = json.loads((tmp_path / "filtering-lift-tiny.json").read_text())
    assert (tmp_path / "filtering-lift-tiny.png").read_bytes()[:8] == PNG_MAGIC
    assert [r["keep"] for r in saved["rows"]] == [label for label, _, _ in filtering.conditions()]
    assert [r["classifier"] for r in saved["rows"]] == [None] + ["centroid", "knn"] * (len(filtering.CONDITIONS) - 1)
    assert sum(saved["demos_per_proficiency"].values()) == saved["demos"] and min(saved["demos_per_proficiency"].values()) >= 1
    for row in saved["rows"]:  # every condition acts to the end: unfilterable states fall back on the closest sample
        assert "error" not in row
        low, high = row["success_ci95"]
        assert 0 <= low <= row["success_rate"] <= high <= 1 and row["mean_length"] > 0
        if row["kept"] is None:
            assert row.get("acceptance_rate") is None
        else:
            assert 0 <= row["acceptance_rate"] <= 1 and 0 <= row["fallback_rate"] <= 1 and len(row["labelled_accuracy"]) == 3
    # One agent for both benchmarks: the horizon benchmark's cache.
    s = filtering.setting("tiny")
    key = horizon.agent_key("LWD", s.horizons[0], 0, s)
    assert saved["agent"] == key and (tmp_path / "cache" / "horizon-lift-tiny" / f"{key}.ckpt").exists()
    assert (tmp_path / "cells" / "filtering-lift-tiny" / f"{key}-all-{s.episodes}ep.json").exists()  # every row: the same agent's
    # The labels are the episodes' proficiencies.
    import minari

    dataset = minari.load_dataset(f"bench/robosuite-lift-{s.num_demos}ep-seed0-v0")
    demos = filtering.labelled(dataset)
    assert demos.num_tasks == 3
    np.testing.assert_array_equal(demos.tasks, [int(e.infos["proficiency"][0]) for e in dataset.iterate_episodes()])
    assert results["rows"] == saved["rows"]

    from lwd_gym import BaseAgent

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached agent was retrained or a cached cell re-evaluated")

    monkeypatch.setattr(BaseAgent, "_prepare", must_not_run)
    monkeypatch.setattr("benchmarks.filtering.evaluate", must_not_run)
    monkeypatch.setattr("benchmarks.horizon.evaluate", must_not_run)
    assert filtering.main(["--profile", "tiny", "--out", str(tmp_path), "--threads", "1"])["rows"] == saved["rows"]
