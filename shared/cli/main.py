"""Entry point of the `sluice` command."""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.mesh import GRPC_SERVICES


def state_dir() -> Path:
    """Where `sluice up` keeps logs and the local trace journal."""
    return Path(os.environ.get("SLUICE_HOME", ".sluice")).resolve()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the whole mesh and the provider simulator locally")
    up.add_argument(
        "--replay",
        type=Path,
        help="RouterBench CSV folder (API key `routerbench`) or RouteLLM's evaluation folder "
        "(API key `routellm`): the simulator answers with the recordings, and the dispatcher "
        "and router are wired to the replayed models",
    )
    up.add_argument(
        "--free-ports", action="store_true", help="pick free ports instead of the defaults"
    )
    up.add_argument(
        "--trace-ui",
        action="store_true",
        help="also start Arize Phoenix on 127.0.0.1:6006 and send it the traces (installed "
        "into .sluice/phoenix-venv on first use)",
    )

    ask = commands.add_parser("ask", help="send one question through the router")
    ask.add_argument("prompt")
    ask.add_argument("--router", default=os.environ.get("SLUICE_ROUTER_ADDR", "127.0.0.1:50051"))
    ask.add_argument("--api-key", default=os.environ.get("SLUICE_API_KEY", "dev"))
    ask.add_argument("--model-class", default="")
    ask.add_argument("--system", default="", help="an optional system prompt")
    ask.add_argument("--no-cache", action="store_true", help="bypass the cache")
    ask.add_argument("--stream", action="store_true", help="use CompleteStream")
    ask.add_argument("--timeout", type=float, default=60.0)

    from shared.cli.report import add_arguments as report_arguments

    report = commands.add_parser(
        "report", help="cost and savings for a period, from the router's usage record"
    )
    report_arguments(report)

    show = commands.add_parser("trace", help="print a trace that `sluice up` collected")
    show.add_argument("trace_id")
    show.add_argument("--wait", type=float, default=5.0, help="seconds to wait for late spans")

    serve = commands.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=[*GRPC_SERVICES, "simulator"])
    serve.add_argument(
        "service_args", nargs="*", help="passed to the service (the simulator: a replay folder)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        # The service's __main__ reads its own argv (the simulator takes a replay folder as a
        # positional argument), so it must see its own arguments, not `serve <service>`.
        sys.argv = [f"services.{args.service}", *args.service_args]
        runpy.run_module(f"services.{args.service}", run_name="__main__", alter_sys=True)
        return 0
    if args.command == "up":
        from shared.cli.up import run_up

        return run_up(state_dir(), replay=args.replay, free=args.free_ports, trace_ui=args.trace_ui)
    if args.command == "ask":
        from shared.cli.ask import run_ask

        return run_ask(args, state_dir())
    if args.command == "report":
        from shared.cli.report import run_report

        return run_report(args)
    from shared.cli.trace import run_trace

    return run_trace(args.trace_id, state_dir(), args.wait)


if __name__ == "__main__":
    raise SystemExit(main())
