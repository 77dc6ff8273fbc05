"""``lwd-gym`` command line: parses arguments and calls the library, nothing more."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    from lwd_gym.demo import format_table, run_demo

    rows = run_demo(seed=args.seed, num_demos=args.demos, eval_episodes=args.episodes, device=args.device, out_dir=args.out)
    print(f"\nTwo-paths environment, {args.episodes} evaluation episodes, seed {args.seed}:\n")
    print(format_table(rows))
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
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
