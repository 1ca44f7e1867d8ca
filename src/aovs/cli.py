"""``aovs`` command line: agent, sandbox, demo, simulate-server, cleanup, status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aovs.config import ConfigError, ConfigLocation, IniFiles
from aovs.ovsdb.errors import OVSDBError
from aovs.ovsdb.tls import TLSConfigError

Handler = Callable[[argparse.Namespace], int]


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from aovs.sandbox import OVSSandbox, SandboxError

    sandbox = OVSSandbox(Path(args.dir))
    try:
        if args.action == "start":
            sandbox.start(physical_bridges=args.physical_bridge or ())
            print(sandbox.exports())
        else:
            sandbox.stop()
    except SandboxError as exc:
        print(f"aovs sandbox: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_agent(args: argparse.Namespace) -> int:
    from aovs.agent.agent import run_agent
    from aovs.config import log_ignored, read_config
    from aovs.logs import configure_logging

    location = _config_location(args)
    loaded = read_config(location)
    cfg = loaded.config
    configure_logging(cfg.agent.log_level, cfg.agent.log_format)
    log_ignored(loaded)  # once, at start: names only
    return run_agent(cfg, reread=lambda: read_config(location).config)


def _cmd_demo(args: argparse.Namespace) -> int:
    from aovs.demo import run_demo
    from aovs.logs import configure_logging

    configure_logging("WARNING", "text")  # the demo's own table is the output; warnings stay
    return run_demo(ports=args.ports, keep=args.keep)


def _cmd_simulate_server(args: argparse.Namespace) -> int:
    from aovs.testing.simulator_cli import run_simulate_server

    return run_simulate_server(args.topology, args.transport_url, args.server_host)


def _cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the configuration; optionally print one derived value for shell scripts."""
    from aovs.config import read_config, redact_url

    loaded = read_config(_config_location(args))
    cfg = loaded.config
    if loaded.ignored_line is not None:
        print(f"aovs check-config: {loaded.ignored_line}", file=sys.stderr)
    if args.print == "ovsdb_socket":
        conn = cfg.ovs.ovsdb_connection
        print(conn.removeprefix("unix:") if conn.startswith("unix:") else "")
    elif args.print == "json":
        print(cfg.model_copy(update={"transport_url": redact_url(cfg.transport_url)})
              .model_dump_json(indent=2))  # fmt: skip
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from aovs.observability import default_socket_path
    from aovs.observability.status_command import run_status

    socket = args.socket
    if socket is None:  # <state_path>/aovs.sock, from the same configuration as the agent's
        from aovs.config import load_config

        socket = default_socket_path(load_config(_config_location(args)))
    return run_status(socket, None, args.json, args.health, args.timeout)


def _cmd_cleanup(args: argparse.Namespace) -> int:
    from aovs.cleanup import run_cleanup

    return run_cleanup(_config_location(args), dry_run=args.dry_run, timeout=args.timeout)


class _IniArgument(argparse.Action):
    """``--config-file`` / ``--config-dir``: appended in command-line order, as oslo.config
    reads them (a directory's files at its place: later arguments override earlier ones)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        entries = list(getattr(namespace, self.dest, None) or [])
        entries.append((self.const, Path(str(values))))
        setattr(namespace, self.dest, entries)


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "configuration", "neutron's INI files (--config-file, --config-dir) or aovs' TOML file"
    )
    file_help = (
        "neutron's file (neutron.conf, openvswitch_agent.ini); repeat it: later files override "
        "earlier ones, option by option"
    )
    dir_help = "also read DIR/*.conf, sorted, at this place of the command line"
    toml_help = "aovs' TOML file (default: $AOVS_CONFIG, else /etc/aovs/aovs.toml if it exists)"
    for flag, kind, metavar, text in (
        ("--config-file", "file", "PATH", file_help),
        ("--config-dir", "dir", "DIR", dir_help),
    ):
        group.add_argument(
            flag, dest="config_sources", action=_IniArgument, const=kind, metavar=metavar,
            help=text,
        )  # fmt: skip
    group.add_argument("--config", type=Path, metavar="FILE", help=toml_help)


def _config_location(args: argparse.Namespace) -> ConfigLocation:
    sources = getattr(args, "config_sources", None)
    if not sources:
        config: Path | None = args.config
        return config
    if args.config is not None:
        raise ConfigError("--config (TOML) cannot be combined with --config-file/--config-dir")
    return IniFiles(tuple(sources))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aovs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    agent = sub.add_parser("agent", help="wire VM ports on this hypervisor (the L2 agent)")
    _add_config_arguments(agent)
    agent.set_defaults(handler=_cmd_agent)

    sandbox = sub.add_parser("sandbox", help="a private OVS with the dummy datapath")
    sandbox.add_argument("action", choices=("start", "stop"))
    sandbox.add_argument("--dir", required=True, help="directory for db, sockets, logs")
    sandbox.add_argument(
        "--physical-bridge", action="append", help="also create this bridge with a dummy uplink"
    )
    sandbox.set_defaults(handler=_cmd_sandbox)

    demo = sub.add_parser("demo", help="the main job end to end on a private OVS and RabbitMQ")
    demo.add_argument("--ports", type=int, default=200)
    demo.add_argument("--keep", action="store_true", help="keep the sandbox directory")
    demo.set_defaults(handler=_cmd_demo)

    simulate = sub.add_parser(
        "simulate-server", help="a neutron-server stand-in on RabbitMQ, serving a topology file"
    )
    simulate.add_argument("--topology", type=Path, required=True, help="topology JSON file")
    simulate.add_argument(
        "--transport-url",
        default="rabbit://guest:guest@127.0.0.1:5672/",
        help="rabbit://user:pass@host:port/vhost (default: local broker, vhost /)",
    )
    simulate.add_argument("--server-host", default="neutron-server", help="its oslo server name")
    simulate.set_defaults(handler=_cmd_simulate_server)

    check = sub.add_parser("check-config", help="validate the configuration and exit")
    _add_config_arguments(check)
    check.add_argument("--print", choices=("ovsdb_socket", "json"), help="print a value")
    check.set_defaults(handler=_cmd_check_config)

    status = sub.add_parser("status", help="ask the running agent: ports, transitions, health")
    status.add_argument("--socket", type=Path, help="default: <state_path>/aovs.sock")
    _add_config_arguments(status)
    status.add_argument("--json", action="store_true", help="the raw snapshot as JSON")
    status.add_argument("--health", action="store_true", help="exit 0 healthy, 1 not, 2 no agent")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    status.set_defaults(handler=_cmd_status)

    cleanup = sub.add_parser("cleanup", help="remove the ports aovs/neutron created (like "
                             "neutron-ovs-cleanup); run with the agent stopped")  # fmt: skip
    _add_config_arguments(cleanup)
    cleanup.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    cleanup.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    cleanup.set_defaults(handler=_cmd_cleanup)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ConfigError, TLSConfigError) as exc:  # a key that does not match its certificate
        print(f"aovs: {exc}", file=sys.stderr)
        return 2
    except OVSDBError as exc:  # e.g. no OVSDB socket within the start's 30 s: one line, exit 3
        print(f"aovs: OVSDB: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
