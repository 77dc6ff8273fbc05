"""Smoke tests: every benchmark runs end to end on its tiny profile, writes a JSON of the
documented shape and a PNG.  Numbers are not checked (benchmarks report them, tests don't)."""
import csv
import dataclasses
import json
import math

import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _finite_positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _run(module, tmp_path, *extra):
    import importlib

    return importlib.import_module(f"benchmarks.{module}").main(["--profile", "tiny", "--out", str(tmp_path), *extra])


def test_speed(tmp_path):
    results = _run("speed", tmp_path)
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert (tmp_path / "speed.png").read_bytes()[:8] == PNG_MAGIC
    assert saved["benchmark"] == "speed" and saved["profile"] == "tiny" and saved["machine"]["cpu_cores"] >= 1
    agents = {r["agent"] for r in saved["acting"]}
    assert {"LWD", "MLP"} <= agents and any(a.startswith("DP-") for a in agents)
    for r in saved["acting"]:
        assert all(_finite_positive(r[k]) for k in ("step_us", "step_us_per_env", "plan_ms", "amortised_us_per_env_step")), r
    assert _finite_positive(saved["host_vs_torch_1env"]["host_us"]) and _finite_positive(saved["host_vs_torch_1env"]["torch_us"])
    assert {r["sampler"].split("-")[0] for r in saved["samplers"]} == {"ddpm", "ddim", "dpmsolver++"}
    assert [r["forward"] for r in saved["training"]] == ["batched", "per-sample loop"]
    assert all(0 <= r["data_share"] <= 1 and _finite_positive(r["snippets_per_s"]) for r in saved["training"])
    assert all(_finite_positive(r["gflops_per_step"]) for r in saved["flops"])
    assert results["flops"] == saved["flops"]


@pytest.mark.parametrize("env", ["bimodal", "pusht"])
def test_samplers(tmp_path, env):
    _run("samplers", tmp_path, "--env", env)
    saved = json.loads((tmp_path / f"samplers-{env}.json").read_text())
    assert (tmp_path / f"samplers-{env}.png").read_bytes()[:8] == PNG_MAGIC
    assert saved["benchmark"] == "samplers" and saved["reference"].startswith("ddpm-")
    for r in saved["rows"]:
        assert 0 <= r["success_rate"] <= 1 and _finite_positive(r["query_ms"]) and len(r["success_ci95"]) == 2
    assert saved["pick"] is None or saved["pick"] in {f"{r['sampler']}-{r['steps']}" for r in saved["rows"]}
    assert len(list((tmp_path / "cache").glob(f"samplers-{env}-tiny-*.ckpt"))) == 1  # the trained agent is cached for reruns


def test_samplers_standard_pusht_samples_the_horizon_sweeps_agent(tmp_path, monkeypatch):
    """On PushT the standard profile loads (or trains) horizon.py's standard LWD at H_a 16 with the
    VAE-budget probe's steps, in that sweep's own cache and logs: one agent, never a second copy."""
    from benchmarks import horizon, samplers

    calls = []
    monkeypatch.setattr(horizon, "demonstrations", lambda s, profile: ("data", 0.0))
    monkeypatch.setattr(horizon, "trained_agent", lambda *args: calls.append(args) or ("agent", 1.0))
    assert samplers.trained_agent("pusht", "standard", str(tmp_path), "cpu") == ("agent", "gym_pusht/PushT-v0")
    (method, h, s, seed, data, cache, _, env, logs), = calls
    assert (method, h, seed, data, env) == ("LWD", 16, 0, "data", "pusht")
    assert (cache, logs) == (tmp_path / "cache" / "horizon-pusht-standard", tmp_path / "logs" / "horizon-pusht-standard")
    assert s == horizon.with_vae_steps(horizon.setting("pusht", "standard"), horizon.PROBE_VAE_STEPS["pusht"])
    assert s.train_steps["vae_steps"] == horizon.PROBE_VAE_STEPS["pusht"] != horizon.setting("pusht", "standard").train_steps["vae_steps"]


def test_horizon(tmp_path, monkeypatch):
    results = _run("horizon", tmp_path)
    saved = json.loads((tmp_path / "horizon-pusht.json").read_text())
    assert (tmp_path / "horizon-pusht.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "horizon-pusht-time.png").read_bytes()[:8] == PNG_MAGIC
    assert saved["benchmark"] == "horizon" and saved["methods"] == ["LWD", "LWD+WM", "DP", "LDP", "MLP", "Random"]
    grid = {(r["method"], r["horizon"], r["magnitude"]) for r in saved["rows"]}
    for method in ("LWD", "LWD+WM", "DP", "LDP"):  # one agent per horizon, evaluated at every magnitude
        assert {(method, h, m) for h in saved["horizons"] for m in saved["magnitudes"]} <= grid
    assert {("MLP", None, m) for m in saved["magnitudes"]} <= grid
    for r in saved["rows"]:
        assert 0 <= r["success_rate"] <= 1 and 0 <= r["mean_max_reward"] <= 1 and r["episodes"] == saved["episodes_per_cell"]
        assert r["compute_s_per_episode"] >= 0
    for d in saved["drops"]["mean_max_reward"]:
        assert d["best_horizon"] in saved["horizons"] and min(d["drop"].values()) == 0 and all(v >= 0 for v in d["drop"].values())
    # The VAE-decoded bars: every generated-policy agent's posterior-mean policies, replayed from
    # the demonstrations' own seeds (no diffusion), committed beside the cells.
    from benchmarks import common
    from benchmarks.horizon import DECODED_METHODS, decoded_path, setting
    from lwd_gym.data import load_demonstrations

    s = setting("pusht", "tiny")
    assert {(d["method"], d["horizon"]) for d in saved["decoded"]} == {(m, h) for m in DECODED_METHODS for h in saved["horizons"]}
    demo_seeds = [int(x) for x in load_demonstrations(common.demonstrations(s.source, s.num_demos, seed=0, progress=False)).seeds]
    for d in saved["decoded"]:
        assert d["demonstrations"] == s.decoded_demos and 0 <= d["success_rate"] <= 1 and 0 <= d["mean_max_reward"] <= 1
        cell = json.loads(decoded_path(tmp_path / "cells" / "horizon-pusht-tiny", d["method"], d["horizon"], 0, s).read_text())
        assert [e["seed"] for e in cell["episodes"]] == demo_seeds[: s.decoded_demos] and {e["kind"] for e in cell["episodes"]} == {"own"}
    # A rerun loads every trained agent and evaluated cell from the cache instead of redoing them.
    from lwd_gym import BaseAgent

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached agent was retrained or a cached cell re-evaluated")

    monkeypatch.setattr(BaseAgent, "_prepare", must_not_run)  # every learn() starts here
    monkeypatch.setattr("benchmarks.horizon.evaluate", must_not_run)
    rerun = _run("horizon", tmp_path)
    assert rerun["rows"] == results["rows"] and rerun["training"] == results["training"]
    # Cells are kept outside the (git-ignored) cache, with every trained agent's learning curves
    # (in-training success at every eval_every), so a sweep resumes in a fresh checkout.
    cells = list((tmp_path / "cells" / "horizon-pusht-tiny").glob("*.json"))
    assert len(cells) == len(saved["cells"]) + len(saved["decoded"])
    curves = sorted((tmp_path / "logs" / "horizon-pusht-tiny").iterdir())
    assert len(curves) == len([t for t in saved["training"] if t["method"] != "Random"])
    for d in curves:  # the acting stage (the last one) is evaluated while it trains
        evaluated = [r["eval_success"] for f in d.glob("*.csv") for r in csv.DictReader(f.open()) if r.get("eval_success")]
        assert evaluated and all(0 <= float(v) <= 1 for v in evaluated), d.name
    # A fresh checkout (committed cells and curves, no cache) assembles the results without
    # collecting demonstrations or retraining; training seconds come from the curves.
    import shutil

    shutil.rmtree(tmp_path / "cache")
    monkeypatch.setattr("benchmarks.horizon.demonstrations", must_not_run)
    fresh = _run("horizon", tmp_path)
    assert fresh["rows"] == results["rows"] and not (tmp_path / "cache" / "horizon-pusht-tiny").exists()
    assert fresh["decoded"] == results["decoded"]
    for before, after in zip(results["training"], fresh["training"]):
        assert (before["method"], before["horizon"]) == (after["method"], after["horizon"])
        if before["method"] != "Random":  # Random trains nothing and keeps no curve
            assert 0 < after["train_seconds"] <= before["train_seconds"]
    monkeypatch.undo()
    # A part adds up with earlier parts: its JSON holds every cell of the recipe evaluated so far,
    # and says "partial" while some agent of the sweep has none (here DP's, removed).
    for path in (tmp_path / "cells" / "horizon-pusht-tiny").glob("DP-*.json"):
        path.unlink()
    part = _run("horizon", tmp_path, "--methods", "LWD", "--horizons", "8")
    assert part["partial"] and (tmp_path / "horizon-pusht-partial.json").exists()
    assert {(r["method"], r["horizon"]) for r in part["rows"]} == {(r["method"], r["horizon"]) for r in results["rows"] if r["method"] != "DP"}
    assert [r for r in part["rows"] if r["method"] != "DP"] == [r for r in results["rows"] if r["method"] != "DP"]
    from benchmarks.horizon import drops

    one = [r for r in results["rows"] if r["method"] == "LWD" and r["horizon"] == 8]  # one horizon: no drop
    assert one and drops(one, "success_rate") == {} and len(drops(results["rows"], "success_rate")) == 4 * len(saved["magnitudes"])
    with pytest.raises(SystemExit):
        _run("horizon", tmp_path, "--horizons", "5")


def test_a_training_resumed_in_a_second_process_reports_the_time_of_both(tmp_path, monkeypatch):
    """A sweep's agent whose process stopped after training, before saving, is finished from its
    training state by the next process: its recorded training time is the whole training's
    (the curves' clocks), not the few seconds the finishing process took."""
    from benchmarks import horizon
    from lwd_gym import BaseAgent

    s = horizon.setting("pusht", "tiny")
    dataset, _ = horizon.demonstrations(s, "tiny")
    cache, logs = tmp_path / "cache", tmp_path / "logs"
    key = horizon.agent_key("DP", 8, 0, s)

    def stopped(self, path):
        raise KeyboardInterrupt("stopped before the save")

    with monkeypatch.context() as m:
        m.setattr(BaseAgent, "save", stopped)
        with pytest.raises(KeyboardInterrupt):
            horizon.trained_agent("DP", 8, s, 0, dataset, cache, "cpu", logs=logs)
    assert (cache / f"{key}-state").is_dir() and not (cache / f"{key}.ckpt").exists()
    first = horizon.curve_seconds(logs / key)
    assert first is not None and first > 0
    _, seconds = horizon.trained_agent("DP", 8, s, 0, dataset, cache, "cpu", logs=logs)
    assert seconds == first == horizon.recorded_train_seconds("DP", 8, 0, s, cache, None)


def test_horizon_pusht_keypoints(tmp_path, monkeypatch):
    """``--env pusht-keypoints``: agents learn from and act on the 18-d keypoint observation
    (agent xy, the T's 8 corners), perturbed cells included, cached apart from the 5-d state's."""
    from benchmarks.horizon import env_factory, setting

    s = setting("pusht-keypoints", "tiny")
    for magnitude in s.magnitudes:
        env = env_factory("pusht-keypoints", s, magnitude)()
        assert env.observation_space.shape == (18,) and env.reset(seed=0)[0].shape == (18,)
        env.close()
    part = _run("horizon", tmp_path, "--env", "pusht-keypoints", "--methods", "LWD", "--horizons", "4")
    assert {(r["method"], r["horizon"]) for r in part["rows"]} == {("LWD", 4)}
    assert {r["magnitude"] for r in part["rows"]} == set(s.magnitudes)
    assert (tmp_path / "horizon-pusht-keypoints-partial.json").exists()
    assert len(list((tmp_path / "cache" / "horizon-pusht-keypoints-tiny").glob("LWD-H4-*.ckpt"))) == 1
    # --vae-steps, a recipe probe: another VAE budget is another agent, in its own JSON
    probe = _run("horizon", tmp_path, "--env", "pusht-keypoints", "--methods", "LWD", "--horizons", "4", "--vae-steps", "3")
    assert [t["method"] for t in probe["training"]] == ["LWD"]
    assert len(list((tmp_path / "cache" / "horizon-pusht-keypoints-tiny").glob("LWD-H4-*.ckpt"))) == 2
    assert (tmp_path / "horizon-pusht-keypoints-vae3-partial.json").exists()
    assert {len(f.read_text().splitlines()) - 1 for f in (tmp_path / "logs" / "horizon-pusht-keypoints-tiny").glob("*/vae.csv")} == {2, 3}  # one row per VAE step
    # --dp-steps, the same for DP's one stage
    probe = _run("horizon", tmp_path, "--env", "pusht-keypoints", "--methods", "DP", "--horizons", "4", "--dp-steps", "3")
    # DP trained; the LWD H4 agent's cells come along (its key does not hold DP's budget)
    assert [t["method"] for t in probe["training"]] == ["DP", "LWD"] and (tmp_path / "horizon-pusht-keypoints-dp3-partial.json").exists()
    assert [len(f.read_text().splitlines()) - 1 for f in (tmp_path / "logs" / "horizon-pusht-keypoints-tiny").glob("DP-*/*.csv")] == [3]
    with pytest.raises(SystemExit):
        _run("horizon", tmp_path, "--env", "pusht-keypoints", "--dp-steps", "0")
    # --diffusion-steps, the latent methods' second stage: another agent (its VAE stage as before), in its own JSON
    probe = _run("horizon", tmp_path, "--env", "pusht-keypoints", "--methods", "LWD", "--horizons", "4", "--diffusion-steps", "3")
    assert [t["method"] for t in probe["training"]] == ["LWD"] and (tmp_path / "horizon-pusht-keypoints-diff3-partial.json").exists()
    assert len(list((tmp_path / "cache" / "horizon-pusht-keypoints-tiny").glob("LWD-H4-*.ckpt"))) == 3
    assert sorted(len(f.read_text().splitlines()) - 1 for f in (tmp_path / "logs" / "horizon-pusht-keypoints-tiny").glob("LWD-*/latent-diffusion.csv")) == [2, 2, 3]
    with pytest.raises(SystemExit):
        _run("horizon", tmp_path, "--env", "pusht-keypoints", "--diffusion-steps", "0")
    # --keep-best-vae: the latent methods' VAE keeps its best-validation weights, another agent (DP's key unchanged)
    from benchmarks.horizon import _learn_options, agent_key, probe_tag

    best = dataclasses.replace(s, keep_best_vae=True)
    assert _learn_options("LWD", best) == {"keep_best_validation": True} and _learn_options("DP", best) == {} == _learn_options("LWD", s)
    assert agent_key("LWD", 4, 0, best) != agent_key("LWD", 4, 0, s) and agent_key("DP", 4, 0, best) == agent_key("DP", 4, 0, s)
    assert probe_tag(None, None, True) == "bestvae" and probe_tag(1000, None, True) == "vae1000-bestvae" and probe_tag(None, None) == ""
    assert probe_tag(1000, 50, diffusion_steps=20_000) == "vae1000-diff20000-dp50"
    # --deterministic, an acting probe: the same (cached) agent acts with deterministic=True, in cells of its own
    from benchmarks import horizon

    calls = []
    real = horizon.evaluate
    monkeypatch.setattr(horizon, "evaluate", lambda *a, **k: calls.append(k["deterministic"]) or real(*a, **k))
    cells = tmp_path / "cells" / "horizon-pusht-keypoints-tiny"
    stochastic = set(cells.glob("LWD-*-m*.json"))
    lwd = set((tmp_path / "cache" / "horizon-pusht-keypoints-tiny").glob("LWD-H4-*.ckpt"))
    det = _run("horizon", tmp_path, "--env", "pusht-keypoints", "--methods", "LWD", "--horizons", "4", "--deterministic")
    assert calls == [True] * len(s.magnitudes) and set(cells.glob("LWD-*-m*.json")) - stochastic  # evaluated anew, kept apart
    assert set((tmp_path / "cache" / "horizon-pusht-keypoints-tiny").glob("LWD-H4-*.ckpt")) == lwd  # no agent trained
    assert (tmp_path / "horizon-pusht-keypoints-det-partial.json").exists() and probe_tag(None, None, deterministic=True) == "det"
    assert {(r["method"], r["horizon"]) for r in det["rows"]} == {("LWD", 4)}
    monkeypatch.undo()
    # --train-only --no-train-eval (train where the simulator is absent, evaluate here): another agent,
    # trained without in-training episodes and without cells; the next run evaluates it from the cache
    assert agent_key("DP", 4, 0, dataclasses.replace(s, train_eval=False)) != agent_key("DP", 4, 0, s)
    cache = tmp_path / "cache" / "horizon-pusht-keypoints-tiny"
    before = set(cache.glob("DP-H4-*.ckpt"))
    trained = _run("horizon", tmp_path, "--env", "pusht-keypoints", "--methods", "DP", "--horizons", "4", "--no-train-eval", "--train-only")
    assert trained == {"training": [{"method": "DP", "horizon": 4, "seed": 0, "train_seconds": trained["training"][0]["train_seconds"]}]}
    (new,) = set(cache.glob("DP-H4-*.ckpt")) - before
    assert not (tmp_path / "horizon-pusht-keypoints-noeval-partial.json").exists()
    curve = (tmp_path / "logs" / "horizon-pusht-keypoints-tiny" / new.stem / "diffusion.csv").read_text().splitlines()
    assert len(curve) == 3 and all(line.split(",")[4] == "" for line in curve[1:])  # eval_success column empty
    mtime = new.stat().st_mtime
    evaluated = _run("horizon", tmp_path, "--env", "pusht-keypoints", "--methods", "DP", "--horizons", "4", "--no-train-eval")
    assert new.stat().st_mtime == mtime and len(evaluated["cells"]) == len(evaluated["magnitudes"])  # loaded, not retrained
    assert (tmp_path / "horizon-pusht-keypoints-noeval-partial.json").exists() and probe_tag(None, 6000, False, True) == "dp6000-noeval"


def test_horizon_train_seeds_adds_a_seed_beside_the_trained_ones(tmp_path):
    """--train-seeds 0 1: seed 0's agent and cells are reused, seed 1 is trained and evaluated on its
    own, and the rows average both seeds (their episodes pooled) in a JSON of its own."""
    from benchmarks.horizon import probe_tag

    with pytest.raises(SystemExit):  # a repeated seed is refused before anything trains
        _run("horizon", tmp_path, "--methods", "DP", "--horizons", "4", "--train-seeds", "1", "1")
    assert not (tmp_path / "cache").exists()
    one = _run("horizon", tmp_path, "--methods", "DP", "--horizons", "4")
    cache = tmp_path / "cache" / "horizon-pusht-tiny"
    (seed0,) = cache.glob("DP-H4-s0-*.ckpt")
    mtime = seed0.stat().st_mtime
    two = _run("horizon", tmp_path, "--methods", "DP", "--horizons", "4", "--train-seeds", "0", "1")
    assert seed0.stat().st_mtime == mtime and len(list(cache.glob("DP-H4-s1-*.ckpt"))) == 1  # seed 0 reused, seed 1 trained
    assert [t["seed"] for t in two["training"]] == [0, 1] and two["train_seeds"] == [0, 1]
    assert sorted({c["seed"] for c in two["cells"]}) == [0, 1]
    for row, before in zip(two["rows"], one["rows"]):
        assert row["train_seeds"] == 2 and row["episodes"] == 2 * before["episodes"]
        seeds = [c for c in two["cells"] if (c["method"], c["horizon"], c["magnitude"]) == (row["method"], row["horizon"], row["magnitude"])]
        assert row["success_rate"] == pytest.approx(sum(c["success_rate"] for c in seeds) / 2)
    assert (tmp_path / "horizon-pusht-seeds0-1-partial.json").exists() and probe_tag(1000, None, train_seeds=(0, 1)) == "vae1000-seeds0-1"


def test_diagnosis(tmp_path):
    """The Metaworld diagnosis separates the stages: own-seed and other-seed reconstruction, and sampled."""
    payload = _run("diagnosis", tmp_path)
    assert set(payload["overall"]) == {"own", "other", "sampled"}
    for task in ("reach", "handle-press"):
        cells = payload["per_task"][task]
        assert all(0 <= cells[k]["success"] <= 1 and cells[k]["n"] >= 1 for k in ("own", "other", "sampled")), cells
    assert set(payload["training_log"]) == {"vae", "latent-diffusion"}
    assert (tmp_path / "cache" / "diagnosis").is_dir()  # the trained agent is cached for reruns


def test_cache_keys_name_every_field_of_the_config_and_the_budget():
    """Editing any hyperparameter (one left at its default included), the budget or the data
    gives another cached agent; the same agent keeps its name."""
    from benchmarks.common import cache_key
    from lwd_gym import LWDConfig

    base = cache_key("lwd", LWDConfig(action_horizon=16), {"vae_steps": 10}, ["d"])
    assert base == cache_key("lwd", LWDConfig(action_horizon=16, kl_coef=1e-8), {"vae_steps": 10}, ["d"])
    others = {
        cache_key("lwd", LWDConfig(action_horizon=16, kl_coef=1e-7), {"vae_steps": 10}, ["d"]),
        cache_key("lwd", LWDConfig(action_horizon=16), {"vae_steps": 11}, ["d"]),
        cache_key("lwd", LWDConfig(action_horizon=16), {"vae_steps": 10}, ["e"]),
    }
    assert base not in others and len(others) == 3 and base.startswith("lwd-")


def test_demonstrations_are_collected_once_with_the_experts_success(monkeypatch):
    """Every benchmark gets its data from common.demonstrations: the first call collects and
    records the expert's success rate in the dataset's folder, the next ones only load."""
    import lwd_gym.data.sources as sources
    from benchmarks import common

    dataset = common.demonstrations("bimodal", 3, seed=5, progress=False)
    assert dataset.total_episodes == 3 and dataset.spec.dataset_id == "bench/bimodal-3ep-seed5-v0"
    assert common.expert_success(dataset) == 1.0  # the scripted two-paths expert never fails

    def no_collect(*args, **kwargs):
        raise AssertionError("collected again")

    monkeypatch.setattr(sources, "collect", no_collect)
    again = common.demonstrations("bimodal", 3, seed=5, progress=False)
    assert again.spec.dataset_id == dataset.spec.dataset_id and common.expert_success(again) == 1.0


def test_competence_reads_the_sweeps_curves_and_runs_the_clock_across_stages(tmp_path):
    """benchmarks.competence trains nothing: from hand-made logs, a two-stage agent's curve starts
    after its first stage's wall-clock, and the time to 90 % is the first evaluation at or above it."""
    from benchmarks.competence import main
    from lwd_gym.train_log import StageLog

    nan = float("nan")
    lwd = tmp_path / "logs" / "metaworld" / "lwd-256x256-xs-500-abc"
    lwd.mkdir(parents=True)
    StageLog("vae", [{"step": i, "loss": 1.0, "seconds": 10.0 * i} for i in (1, 2, 3)]).to_csv(lwd / "vae.csv")
    rows = [{"step": i, "loss": 1.0, "seconds": 5.0 * i, "eval_success": {2: 0.5, 4: 0.95, 6: 0.85}.get(i, nan)} for i in range(1, 7)]
    StageLog("latent-diffusion", rows).to_csv(lwd / "latent-diffusion.csv")
    old = tmp_path / "logs" / "metaworld" / "mlp-128x128-1-def"  # a log from before the seconds column
    old.mkdir(parents=True)
    StageLog("bc", [{"step": i, "loss": 1.0, "eval_success": 1.0 if i == 2 else nan} for i in (1, 2)]).to_csv(old / "bc.csv")
    (tmp_path / "cells" / "metaworld").mkdir(parents=True)
    (tmp_path / "cells" / "metaworld" / "lwd-256x256-xs-500-abc-eval500-seed10000.json").write_text(
        json.dumps({"success_rate": 0.93, "success_ci95": [0.9, 0.95], "episodes": 500}))

    results = main(["--out", str(tmp_path)])
    by_key = {r["key"]: r for r in results["rows"]}
    lwd_row, mlp_row = by_key["lwd-256x256-xs-500-abc"], by_key["mlp-128x128-1-def"]
    assert [p["seconds"] for p in lwd_row["points"]] == [30.0 + 10.0, 30.0 + 20.0, 30.0 + 30.0]  # after the VAE's 30 s
    assert lwd_row["seconds_to_target"] == 50.0 and lwd_row["train_seconds"] == 60.0 and lwd_row["test_success"] == 0.93
    assert mlp_row["timed"] is False and mlp_row["seconds_to_target"] is None and mlp_row["test_success"] is None
    assert (tmp_path / "competence-metaworld.png").read_bytes()[:8] == PNG_MAGIC


def test_defaults(tmp_path):
    results = _run("defaults", tmp_path)
    saved = json.loads((tmp_path / "defaults-bimodal-tiny.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(results["rows"])) and saved["env_kwargs"] == {"max_step": 0.035}
    rows = {r["agent"]: r for r in saved["rows"]}
    assert set(rows) == {"LWD", "MLP", "Random"}
    assert rows["LWD"]["stages"] == {"vae": {"steps": 2, "last_val_loss": None}, "latent-diffusion": {"steps": 2, "last_val_loss": None}}
    for r in rows.values():
        low, high = r["success_ci95"]
        assert 0 <= low <= r["success_rate"] <= high <= 1 and r["episodes"] == 4
        assert 0 <= r["left"] + r["right"] <= 1
    # resumable: every trained row is a cell (with its learning curves); a rerun reads it back, --only runs a part
    cells = sorted((tmp_path / "cells" / "defaults").glob("*.json"))
    assert len(cells) == 2 and all((tmp_path / "logs" / "defaults" / c.stem).is_dir() for c in cells)
    stamps = [c.stat().st_mtime_ns for c in cells]
    again = _run("defaults", tmp_path, "--only", "MLP")
    assert [r["agent"] for r in again["rows"]] == ["MLP", "Random"] and again["rows"][0] == json.loads(json.dumps(rows["MLP"]))
    assert [c.stat().st_mtime_ns for c in cells] == stamps
    with pytest.raises(SystemExit, match="unknown agent"):
        _run("defaults", tmp_path, "--only", "PPO")
