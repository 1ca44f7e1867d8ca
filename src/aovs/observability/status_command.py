"""``aovs status``: ask a running agent over its unix socket and print what it says.

Exit codes (the container HEALTHCHECK relies on them): 0 healthy / answered, 1 unhealthy
(``--health``), 2 no agent reachable (or an unusable configuration).
"""

from __future__ import annotations

import sys
from pathlib import Path

from aovs.config import load_config
from aovs.observability.status_client import AgentUnreachable, fetch_health, fetch_status
from aovs.observability.status_protocol import StatusProtocolError
from aovs.observability.status_view import render_status

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_UNREACHABLE = 2


def resolve_socket(socket_path: Path | None, config: Path | None) -> Path:
    """``--socket`` as given, else ``<state_path>/aovs.sock`` from the configuration."""
    if socket_path is not None:
        return socket_path
    from aovs.observability import default_socket_path

    return default_socket_path(load_config(config))


def run_status(
    socket_path: Path | None,
    config: Path | None,
    as_json: bool = False,
    health_only: bool = False,
    timeout: float = 5.0,
) -> int:
    path = resolve_socket(socket_path, config)
    try:
        if health_only:
            report = fetch_health(path, timeout)
            print(report.model_dump_json(indent=2) if as_json else report.summary())
            return EXIT_OK if report.healthy else EXIT_UNHEALTHY
        status = fetch_status(path, timeout)
    except (AgentUnreachable, StatusProtocolError) as exc:
        print(f"aovs status: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(status.model_dump_json(indent=2) if as_json else render_status(status))
    return EXIT_OK
