"""Exported policies: file size and per-step latency of the numpy runner and of onnxruntime.

    OMP_NUM_THREADS=1 python -m benchmarks.export_latency --profile quick

One LWD generated policy of Metaworld's sizes (39 -> 256 -> 256 -> 4; ``tiny``: 6 -> 16 -> 16 -> 2),
sampled from an agent trained for two steps on a synthetic dataset (latency depends on the sizes
only), written by ``export_policy`` (``.npz``, run by :class:`~lwd_gym.export.NumpyPolicy`) and
``export_onnx`` (``.onnx``, run by an onnxruntime ``InferenceSession`` with one intra-op and one
inter-op thread).  Each runner gets one observation per call as a deployment loop would give it
(``[obs_dim]`` to the numpy runner, ``[1, obs_dim]`` to onnxruntime); every call is timed on its
own with ``time.perf_counter`` and the median and 90th percentile are reported.  Writes
``export_latency.json`` under ``--out`` (no figure: two numbers per runner) and prints a table.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from lwd_gym import LWDAgent
from lwd_gym.export import NumpyPolicy, export_policy

PROFILES: dict[str, dict[str, Any]] = {
    "tiny": dict(obs=6, act=2, hidden=(16, 16), calls=200),
    "quick": dict(obs=39, act=4, hidden=(256, 256), calls=20_000),
}
PROFILES["paper"] = {**PROFILES["quick"], "calls": 100_000}


def per_call_us(fn: Callable[[], Any], calls: int, warmup: int = 100) -> tuple[float, float]:
    """Median and 90th percentile, in microseconds, of ``calls`` individually timed calls of ``fn``."""
    for _ in range(warmup):
        fn()
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1e6), float(np.quantile(times, 0.9) * 1e6)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import onnxruntime as ort

    args = common.parser(__doc__.splitlines()[0], profiles=tuple(PROFILES)).parse_args(argv)
    common.setup(args)
    cfg = PROFILES[args.profile]
    dataset = common.synthetic_dataset(f"bench/synthetic-{cfg['obs']}x{cfg['act']}-v0", cfg["obs"], cfg["act"], episodes=20, length=100)
    agent = LWDAgent(action_horizon=32, snippet_length=8, latent_dim=16, policy_hidden=cfg["hidden"], hypernet_size="xs",
                     denoiser_size="xs", num_inference_steps=2, batch_size=16, device="cpu")  # fmt: skip
    agent.learn(dataset, vae_steps=2, diffusion_steps=2, progress_bar=False)
    obs = agent.obs_normalizer.mean.astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        npz = export_policy(agent, Path(tmp) / "policy.npz", obs, seed=0)
        onnx_path = agent.export_onnx(Path(tmp) / "policy.onnx", obs, seed=0)
        policy = NumpyPolicy.load(npz)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        feed = {"observation": obs[None]}
        np.testing.assert_allclose(session.run(None, feed)[0][0], policy(obs), rtol=1e-4, atol=1e-5)  # the same policy
        rows = []
        for runner, path, fn in (("numpy (.npz)", npz, lambda: policy(obs)), ("onnxruntime (.onnx)", onnx_path, lambda: session.run(None, feed))):
            median, p90 = per_call_us(fn, cfg["calls"])
            rows.append({"runner": runner, "file_bytes": path.stat().st_size, "median_us": median, "p90_us": p90, "calls": cfg["calls"]})
    results = {"benchmark": "export_latency", "profile": args.profile, "machine": common.machine(), "onnxruntime": ort.__version__,
               "sizes": [cfg["obs"], *cfg["hidden"], cfg["act"]], "runners": rows}  # fmt: skip
    json_path = common.write_json(args.out, "export_latency", results)
    m = results["machine"]
    print(f"\nexport_latency ({args.profile}), policy {'->'.join(map(str, results['sizes']))} on {m['cpu']} ({m['cpu_cores']} cores)\n")
    print(common.format_table(rows, [("runner", "runner", "{}"), ("file bytes", "file_bytes", "{:,}"), ("us/step (median)", "median_us", "{:.1f}"), ("p90", "p90_us", "{:.1f}")]))
    print(f"\nwrote {json_path}")
    return results


if __name__ == "__main__":
    main()
