"""Smoke tests of ``benchmarks.metaworld`` (tiny profile): JSON shape and ranges, PNGs, the cache a
rerun resumes from, and the FLOPs extrapolation.  Numbers are not checked (benchmarks report them)."""
import json
import math

import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _finite_positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _probability(x):
    return isinstance(x, (int, float)) and 0 <= x <= 1


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run of both experiments, shared by the tests below (its own Minari dir)."""
    pytest.importorskip("metaworld")
    from benchmarks.metaworld import main

    out = tmp_path_factory.mktemp("metaworld-bench")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(out / "minari"))
        results = main(["--profile", "tiny", "--out", str(out)])
    return out, results


def _common_header(saved, name):
    assert saved["benchmark"] == name and saved["profile"] == "tiny" and saved["subset"]
    assert saved["machine"]["cpu_cores"] >= 1 and len(saved["tasks"]) >= 2
    assert set(saved["expert_success"]) == set(saved["tasks"]) and all(_probability(v) for v in saved["expert_success"].values())
    assert saved["eval"]["episodes_per_task"] >= 1 and saved["eval"]["episode_steps"] == 500


def _check_rollout(r, tasks):
    assert _probability(r["success_rate"]), r
    low, high = r["success_ci95"]
    assert 0 <= low <= r["success_rate"] <= high <= 1, r
    assert set(r["per_task_success"]) == set(tasks) and all(_probability(v) for v in r["per_task_success"].values())
    assert r["episodes"] >= len(tasks) and r["episodes"] % len(tasks) == 0  # the same number of episodes per task
    assert _finite_positive(r["predict_us_per_env_step"])


def test_compute_json_and_png(tiny_run):
    out, results = tiny_run
    saved = json.loads((out / "metaworld-compute.json").read_text())
    assert (out / "metaworld-compute.png").read_bytes()[:8] == PNG_MAGIC
    _common_header(saved, "metaworld-compute")
    rows = saved["rows"]
    assert {r["agent"] for r in rows} == {"LWD", "DP", "MLP"}
    assert {r["horizon"] for r in rows if r["agent"] == "DP"} == {32, 128}  # the two DP horizons
    for r in rows:
        assert _finite_positive(r["gflops_per_step"]) and _finite_positive(r["gflops_per_step_ddpm100"]), r
        if r["agent"] == "DP":
            assert r["action_horizon"] == r["horizon"] // 2  # re-plans every H_a / 2
        if r["agent"] == "LWD":
            assert r["action_horizon"] == 500 and r["condition_on"] == "task"  # one policy per episode
        if r["agent"] == "MLP":
            assert r["gflops_per_step_ddpm100"] == r["gflops_per_step"]  # no sampler
        else:  # 100 denoising steps cost more than the tiny profile's 2
            assert r["gflops_per_step_ddpm100"] > r["gflops_per_step"]
        if r["success_rate"] is None:  # a configuration with FLOPs only
            assert r["agent"] == "DP" and r["success_ci95"] is None
        else:
            _check_rollout(r, saved["tasks"])
    assert all(r["success_rate"] is not None for r in rows if r["agent"] != "DP")
    assert any(r["success_rate"] is not None for r in rows if r["agent"] == "DP")
    ratio = saved["ratio"]
    labels = {r["label"] for r in rows if r["success_rate"] is not None}
    assert ratio["lwd"] in labels and ratio["dp"] in labels
    assert _finite_positive(ratio["ratio"]) and _finite_positive(ratio["ratio_ddpm100"]) and ratio["paper_ratio"] == 45
    assert results["compute"]["rows"] == rows


def test_hypernet_json_and_png(tiny_run):
    out, results = tiny_run
    saved = json.loads((out / "metaworld-hypernet.json").read_text())
    assert (out / "metaworld-hypernet.png").read_bytes()[:8] == PNG_MAGIC
    _common_header(saved, "metaworld-hypernet")
    rows = saved["rows"]
    assert {r["snippet_length"] for r in rows} == {500, 50}
    for snippet in (500, 50):
        cells = [r for r in rows if r["snippet_length"] == snippet]
        assert len({r["hypernet"] for r in cells}) == len(cells) >= 2
        sizes = [r["hypernet_params"] for r in cells]  # presets in increasing order
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
        for r in cells:
            assert r["action_horizon"] == snippet and r["condition_on"] == ("task" if snippet == 500 else "obs+task")
            assert _finite_positive(r["vae_bc_mse"]) and _finite_positive(r["gflops_per_step"])
            _check_rollout(r, saved["tasks"])
    assert results["hypernet"]["rows"] == rows


def test_rerun_resumes_from_the_cache(tiny_run, monkeypatch):
    from benchmarks.metaworld import main

    out, results = tiny_run
    cache = out / "cache" / "metaworld"
    assert list(cache.glob("*.ckpt")) and list((out / "cells" / "metaworld").glob("*.json"))
    assert not list(cache.glob("*-state"))  # resumable-training state goes once the agent is saved
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out / "minari"))
    again = main(["--profile", "tiny", "--out", str(out), "--experiment", "compute"])
    cells = [t for t in again["compute"]["timings"] if t["what"].startswith("cell ")]
    assert cells and all(t["cached"] for t in cells)  # nothing trained or rolled out again
    assert not any(t["what"].startswith(("train/load", "evaluate")) for t in again["compute"]["timings"])
    assert again["compute"]["rows"] == results["compute"]["rows"]


def test_sampler_probe_evaluates_the_cached_agents_with_another_sampler(tiny_run, monkeypatch):
    from benchmarks.metaworld import main

    out, results = tiny_run
    cache = out / "cache" / "metaworld"
    agents_before = sorted(cache.glob("*.ckpt"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out / "minari"))
    probe = main(["--profile", "tiny", "--out", str(out), "--experiment", "compute", "--only", "DP-xs H32", "--sampler", "ddpm,3"])
    (row,) = probe["compute"]["rows"]
    assert row["label"] == "DP-xs H32" and row["sampler"] == "ddpm-3" and _probability(row["success_rate"])
    assert sorted(cache.glob("*.ckpt")) == agents_before  # the trained agent was loaded, not retrained
    assert (out / "cells" / "metaworld" / f"{row['key']}-ddpm3-eval1-seed10000.json").exists()  # cached apart from the profile's cell
    (usual,) = [r for r in results["compute"]["rows"] if r["label"] == "DP-xs H32"]
    assert usual["sampler"] != "ddpm-3" and row["gflops_per_step"] > usual["gflops_per_step"]  # 3 steps cost more than 2
    with pytest.raises(SystemExit):
        main(["--profile", "tiny", "--out", str(out), "--sampler", "ddpm,3"])  # a probe needs --only


def test_vae_steps_probe_trains_its_own_agent_apart_from_the_profiles(tiny_run, monkeypatch):
    from benchmarks.metaworld import main

    out, results = tiny_run
    cache, cells = out / "cache" / "metaworld", out / "cells" / "metaworld"
    agents_before, hypernet_before = sorted(cache.glob("*.ckpt")), (out / "metaworld-hypernet.json").read_bytes()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out / "minari"))
    probe = main(["--profile", "tiny", "--out", str(out), "--experiment", "hypernet", "--only", "LWD-16 hnet-xs H500", "--vae-steps", "3"])
    (row,) = probe["hypernet"]["rows"]
    (usual,) = [r for r in results["hypernet"]["rows"] if r["label"] == "LWD-16 hnet-xs H500"]
    assert row["vae_steps"] == 3 and usual["vae_steps"] == 2 and row["key"] != usual["key"]
    assert [p.name for p in sorted(cache.glob("*.ckpt")) if p not in agents_before] == [f"{row['key']}.ckpt"]  # trained anew
    assert (cells / f"{row['key']}-vae.json").exists() and (cells / f"{usual['key']}-vae.json").exists()
    assert (out / "metaworld-hypernet.json").read_bytes() == hypernet_before  # the profile's result is left as it was
    with pytest.raises(SystemExit):
        main(["--profile", "tiny", "--out", str(out), "--vae-steps", "3"])  # a probe needs --only
    with pytest.raises(SystemExit):
        main(["--profile", "tiny", "--out", str(out), "--only", "LWD-16", "--vae-steps", "0"])


def test_flops_extrapolation_matches_a_direct_count(tiny_run):
    """``flops_at`` extrapolates from 1 and 2 denoising steps; a direct count at 3 agrees."""
    from benchmarks.metaworld import flops_at
    from lwd_gym import BaseAgent

    out, _ = tiny_run
    for prefix in ("lwd-", "dp-"):
        agent = BaseAgent.load(next((out / "cache" / "metaworld").glob(f"{prefix}*.ckpt")), device="cpu")
        predicted = flops_at(agent, [3])[0]
        agent.num_inference_steps = 3
        assert predicted == pytest.approx(agent.flops_per_step(), rel=1e-9)


def test_parts_of_a_sweep_add_up_to_one_result(tiny_run, tmp_path, monkeypatch):
    """A run with ``--only`` trains only the agents it names, and its result file holds every
    committed row of the experiment: ``-partial`` until the last part, then the full name."""
    from benchmarks.metaworld import main

    minari_dir, _ = tiny_run
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_dir / "minari"))  # the demonstrations, not the agents
    out = tmp_path / "parts"

    def part(label):
        results = main(["--profile", "tiny", "--out", str(out), "--experiment", "hypernet", "--only", label])["hypernet"]
        trained = [t["what"] for t in results["timings"] if t["what"].startswith("train/load")]
        return results, trained

    first, trained = part("LWD-16 hnet-xs H500")
    assert trained and all(w.endswith("LWD-16 hnet-xs H500") for w in trained)  # only the named agent
    saved = json.loads((out / "metaworld-hypernet-partial.json").read_text())
    assert saved["partial"] is True and [r["label"] for r in saved["rows"]] == ["LWD-16 hnet-xs H500"]
    assert not (out / "metaworld-hypernet.json").exists()

    second, trained = part("LWD-16 hnet-s H500")
    assert trained and all(w.endswith("LWD-16 hnet-s H500") for w in trained)  # the first part's agent: not even loaded
    saved = json.loads((out / "metaworld-hypernet-partial.json").read_text())
    assert [r["label"] for r in saved["rows"]] == ["LWD-16 hnet-xs H500", "LWD-16 hnet-s H500"]
    assert saved["rows"][0] == first["rows"][0]  # read back from its committed cells

    last, _ = part("LWD-16 hnet-xs H50,LWD-16 hnet-s H50")
    saved = json.loads((out / "metaworld-hypernet.json").read_text())
    assert saved["partial"] is False and len(saved["rows"]) == 4 and saved["rows"] == last["rows"]
    assert (out / "metaworld-hypernet.png").read_bytes()[:8] == PNG_MAGIC

    nothing = main(["--profile", "tiny", "--out", str(out), "--experiment", "compute", "--only", "LWD-16 hnet"])["compute"]
    assert nothing["rows"] == [] and not (out / "metaworld-compute-partial.json").exists()  # no compute agent has that label


def test_only_names_a_whole_label_or_every_label_it_starts():
    from benchmarks.metaworld import selected

    labels = ["LWD-256 hnet-s H500", "LWD-256 hnet-s H50", "DP-xs H32", "DP-xs H128"]
    assert selected(labels, ["LWD-256 hnet-s H50"], str) == ["LWD-256 hnet-s H50"]  # not its H500 too
    assert selected(labels, ["LWD-256 hnet-s H5"], str) == ["LWD-256 hnet-s H500", "LWD-256 hnet-s H50"]
    assert selected(labels, ["DP-xs", "LWD-256 hnet-s H500"], str) == ["LWD-256 hnet-s H500", "DP-xs H32", "DP-xs H128"]
    assert selected(labels, None, str) == labels and selected(labels, ["MLP"], str) == []


def test_vae_bc_mse_measures_the_windows_the_vae_trained_on(tiny_run, monkeypatch):
    """``vae_bc_mse`` scores the agent's own VAE windows (its ``vae_windows`` rule, e.g. whole
    episodes for ``"plan_starts"``), not every window of the demonstrations."""
    from benchmarks import metaworld
    from lwd_gym import BaseAgent

    out, _ = tiny_run
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out / "minari"))
    datasets, _ = metaworld.demonstrations(metaworld.PROFILES["tiny"]["tasks"], metaworld.PROFILES["tiny"]["demos"], progress=False)
    agent = BaseAgent.load(next((out / "cache" / "metaworld").glob("lwd-*.ckpt")), device="cpu")
    asked = []
    own_rule = agent._vae_snippets

    def spy(demos):
        snippets = own_rule(demos)
        asked.append(len(snippets))
        return snippets

    monkeypatch.setattr(agent, "_vae_snippets", spy)
    assert metaworld.vae_bc_mse(agent, datasets) > 0
    assert len(asked) == 1 and asked[0] >= 1  # the windows came from the agent's own rule
