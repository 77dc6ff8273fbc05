"""``lwd-gym`` command line: parses arguments and calls the library, nothing more."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import gymnasium


def _demo(args: argparse.Namespace) -> int:
    from lwd_gym.demo import format_table, run_demo

    if args.plot is not None:
        _writable_file(args.plot, "--plot")
    rows = run_demo(seed=args.seed, num_demos=args.demos, eval_episodes=args.episodes, device=args.device, out_dir=args.out, plot=args.plot)
    print(f"\nTwo-paths environment, {args.episodes} evaluation episodes, seed {args.seed}:\n")
    print(format_table(rows))
    if args.plot is not None:
        print(f"\nwrote {args.plot}")
    return 0


def _collect(args: argparse.Namespace) -> int:
    from lwd_gym.data.sources import available_sources, collect, get_source

    if args.list or args.env is None:
        for name in available_sources():
            source = get_source(name)
            extra = f"  [needs lwd-gym[{source.extra}]]" if source.extra else ""
            print(f"{name:32s} -> {source.dataset_id}{extra}\n    {source.description}")
        return 0
    dataset, success_rate = collect(
        args.env, args.episodes, args.seed, dataset_id=args.out, keep_failures=args.keep_failures, progress=not args.quiet
    )
    seeds = f"{args.episodes} episodes (seeds {args.seed}..{args.seed + args.episodes - 1})"
    if get_source(args.env).has_success:
        print(f"expert success rate on {args.env}: {success_rate:.1%} over {seeds}")
    else:  # e.g. locomotion: no success to measure, every episode kept
        mean_return = sum(float(ep.rewards.sum()) for ep in dataset.iterate_episodes()) / dataset.total_episodes
        print(f"{args.env}: {seeds}, mean return {mean_return:.1f}")
    print(f"wrote Minari dataset {dataset.spec.dataset_id!r}: {dataset.total_episodes} episodes, {dataset.total_steps} steps")
    return 0


def _key_values(pairs: Sequence[str], what: str) -> dict[str, object]:
    """``["lr=3e-4", "hidden=[64,64]", "scheduler=ddim"]`` -> kwargs (JSON values, else strings)."""
    import json

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _writable_file(path: str, option: str) -> None:
    """Refuse, before any work, an output file that could not be written: a directory, or a
    path under a file or an unwritable directory."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{option} {path} is a directory; give a file name")
    _writable_dir(target.parent, option, path)


def _writable_dir(directory: Path, option: str, path: str) -> None:
    """``directory`` exists as a writable directory, or could be created under one."""
    for ancestor in (directory, *directory.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ValueError(f"{option} {path}: {ancestor} is a file, not a directory")
            if not os.access(ancestor, os.W_OK):
                raise ValueError(f"{option} {path}: {ancestor} is not writable")
            return


def _train(args: argparse.Namespace) -> int:
    from lwd_gym import distributed, registry

    _writable_file(args.out, "--out")
    for option, directory in (("--checkpoint-dir", args.checkpoint_dir), ("--log-dir", args.log_dir)):
        if directory is not None:
            _writable_dir(Path(directory), option, directory)
    try:
        agent = registry.make(args.agent, seed=args.seed, device=args.device, **_key_values(args.set, "--set"))
    except TypeError as err:  # an unknown or misspelt --set key: the message lists the config's fields
        raise ValueError(f"--set: {err}") from err
    datasets = args.datasets if len(args.datasets) > 1 else args.datasets[0]
    learn_kwargs = _key_values(args.learn, "--learn")
    unknown = sorted(set(learn_kwargs) - set(agent.learn_options()))
    if unknown:
        raise ValueError(f"--learn: {type(agent).__name__}.learn() has no option(s) {unknown}; it accepts {', '.join(agent.learn_options())}")
    agent.learn(
        datasets, checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every, progress_bar=not args.quiet,
        log_dir=args.log_dir, **learn_kwargs,
    )  # fmt: skip
    agent.save(args.out)  # rank 0 only under torchrun
    if distributed.is_main_process():
        print(f"trained {type(agent).__name__} on {args.datasets} ({distributed.world_size()} process(es)); wrote {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from lwd_gym import BaseAgent, TaskId, evaluate

    if args.json:
        _writable_file(args.json, "--json")
    if args.video is not None:
        _writable_dir(Path(args.video), "--video", args.video)
    elif args.n_videos is not None:
        raise ValueError("--n-videos needs --video DIR (the directory to write the videos in)")
    agent = BaseAgent.load(args.checkpoint, device=args.device)
    if args.action_horizon is not None:
        agent.action_horizon = args.action_horizon
    env: object = args.env
    if agent.num_tasks > 1:
        if args.task_id is None:
            raise ValueError(f"{args.checkpoint} holds a {agent.num_tasks}-task agent: pass --task-id")
        import gymnasium as gym

        from lwd_gym.envs import make_env

        render = {"render_mode": "rgb_array"} if args.video is not None else {}

        def env() -> gym.Env:  # the agent reads its task from a one-hot appended to the observation
            return TaskId(make_env(args.env, **render), args.task_id, agent.num_tasks)

        env.__name__ = f"{args.env}[task {args.task_id}]"
    result = evaluate(
        agent, env, args.episodes, seed=args.seed, n_envs=args.n_envs, deterministic=args.deterministic, progress=not args.quiet,
        video_dir=args.video, n_videos=args.n_videos,
    )  # fmt: skip
    print(result)
    videos = [e["video"] for e in result.episodes if "video" in e]
    if videos:
        print(f"wrote {len(videos)} video(s) of episodes 0-{len(videos) - 1} to {os.path.dirname(videos[0])}")
    if args.json:
        result.to_json(args.json)
        print(f"wrote {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lwd-gym", description="Latent Weight Diffusion for Gymnasium")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train LWD and a BC MLP on the built-in two-paths task and compare them")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--demos", type=int, default=200, help="expert demonstrations to collect")
    demo.add_argument("--episodes", type=int, default=100, help="evaluation episodes per agent")
    demo.add_argument("--device", default="auto")
    demo.add_argument("--out", default=None, help="directory to save the trained checkpoints in")
    demo.add_argument("--plot", default=None, metavar="PNG", help="also draw the evaluation episodes' paths into this PNG file")
    demo.set_defaults(func=_demo)
    col = sub.add_parser("collect", help="roll a scripted expert in ENV and write a local Minari dataset")
    col.add_argument("env", nargs="?", help="demonstration source, e.g. bimodal, metaworld/reach (see --list)")
    col.add_argument("--episodes", type=int, default=100)
    col.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    col.add_argument("--out", default=None, help="Minari dataset id (default: the source's)")
    col.add_argument("--keep-failures", action="store_true", help="also write episodes the expert failed")
    col.add_argument("--list", action="store_true", help="list the available sources")
    col.add_argument("--quiet", action="store_true", help="no progress bar")
    col.set_defaults(func=_collect)
    tr = sub.add_parser(
        "train",
        help="train an agent on local Minari dataset(s) and save it (runs data-parallel under torchrun)",
        description="Single process: lwd-gym train lwd pusht/expert-v0 --out lwd.ckpt. "
        "Several GPUs/nodes: torchrun --nproc-per-node 4 -m lwd_gym.cli train ... (same arguments).",
    )
    tr.add_argument("agent", help="registered agent name: lwd, dp, ldp, mlp, random (or an entry point)")
    tr.add_argument("datasets", nargs="+", help="Minari dataset id(s); several = one per task")
    tr.add_argument("--out", required=True, help="checkpoint file to write")
    tr.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="fields of the agent's config (LWDConfig, DPConfig, ...), e.g. action_horizon=16 policy_hidden=[128,128]")
    tr.add_argument("--learn", nargs="*", default=[], metavar="KEY=VALUE", help="learn() options (JSON values): budgets steps=N (every stage) or <stage>_steps=N, e.g. vae_steps=2000 diffusion_steps=2000; keep_best_validation=true")
    tr.add_argument("--checkpoint-dir", default=None, help="keep resumable training state here (rerun the command to resume)")
    tr.add_argument("--checkpoint-every", type=int, default=500, help="gradient steps between saves of the training state")
    tr.add_argument("--log-dir", default=None, help="write each training stage's log here (CSV per step; TensorBoard if installed)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default="auto")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="evaluate a saved agent (any lwd-gym checkpoint) on a Gymnasium env")
    ev.add_argument("checkpoint", help="file written by agent.save()")
    ev.add_argument("env", help="Gymnasium env id, e.g. lwd_gym/Bimodal-v0")
    ev.add_argument("--episodes", type=int, default=50)
    ev.add_argument("--seed", type=int, default=0, help="episode k is reset with seed + k")
    ev.add_argument("--n-envs", type=int, default=8, help="parallel envs (results do not depend on it)")
    ev.add_argument("--action-horizon", type=int, default=None, help="override the agent's action horizon")
    ev.add_argument("--task-id", type=int, default=None, help="task of a multi-task agent (appended as a one-hot)")
    ev.add_argument("--deterministic", action="store_true")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--json", default=None, help="also write the EvalResult (with every episode) to this JSON file")
    ev.add_argument("--video", default=None, metavar="DIR", help="record the first episodes as MP4 files in DIR (needs lwd-gym[video] and an env that renders rgb_array)")
    ev.add_argument("--n-videos", type=int, default=None, metavar="K", help="episodes to record with --video (default 1; at most --episodes)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_eval)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ImportError, FileNotFoundError, RuntimeError, gymnasium.error.Error) as err:
        # Bad input from the command line is the user's to fix: a message, not a traceback.
        parser.exit(2, f"lwd-gym {args.command}: error: {err}\n")
    except Exception as err:  # anything else: still one line (LWD_GYM_TRACEBACK=1 shows the traceback)
        if os.environ.get("LWD_GYM_TRACEBACK"):
            raise
        parser.exit(1, f"lwd-gym {args.command}: error: {type(err).__name__}: {err} (set LWD_GYM_TRACEBACK=1 for the traceback)\n")


if __name__ == "__main__":
    sys.exit(main())
