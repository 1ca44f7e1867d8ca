"""The agent's heartbeat to neutron-server (report_state every ``report_interval``).

neutron binds ports only to hosts whose agent reports alive, and answers "revived" when it had
declared the agent dead: the agent must then resync everything, hence ``on_revived``.
``start_flag`` goes with the first report only, until one succeeds (as neutron's agent pops it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aovs.rpc.errors import RpcError
from aovs.rpc.server_api import NeutronServerApi

LOG = logging.getLogger(__name__)

AGENT_BINARY = "neutron-openvswitch-agent"
AGENT_TYPE = "Open vSwitch agent"
REVIVED = "revived"


class StateReporter:
    def __init__(
        self,
        api: NeutronServerApi,
        *,
        interval: float,
        configurations: Callable[[], Mapping[str, Any]],
        device_count: Callable[[], int],
        on_revived: Callable[[], None] | None = None,
        resource_versions: Mapping[str, str] | None = None,
    ) -> None:
        self.api = api
        self.interval = interval
        self.configurations = configurations
        self.device_count = device_count
        self.on_revived = on_revived
        self.reports_sent = 0
        self.last_status: str | None = None
        self._start_flag = True
        # the versioned objects this agent consumes; sent until a report succeeds (as neutron's
        # agent does), so the server also pushes those versions when its own are newer
        self._resource_versions = dict(resource_versions) if resource_versions else None
        self._task: asyncio.Task[None] | None = None

    def agent_state(self) -> dict[str, Any]:
        configurations = dict(self.configurations())
        configurations["devices"] = self.device_count()
        state: dict[str, Any] = {
            "binary": AGENT_BINARY,
            "host": self.api.host,
            "topic": "N/A",
            "agent_type": AGENT_TYPE,
            "configurations": configurations,
        }
        if self._resource_versions:
            state["resource_versions"] = dict(self._resource_versions)
        if self._start_flag:
            state["start_flag"] = True
        return state

    async def report_once(self) -> str | None:
        """One report; RpcError propagates (the loop logs it and tries again next interval)."""
        status = await self.api.report_state(self.agent_state(), within=self.interval or None)
        self._start_flag = False
        self._resource_versions = None
        self.reports_sent += 1
        self.last_status = status
        if status == REVIVED and self.on_revived is not None:
            LOG.warning("neutron-server had declared this agent dead: full resync")
            self.on_revived()
        return status

    def start(self) -> None:
        """Start the heartbeat (a no-op when ``interval`` is 0, as in neutron)."""
        if self._task is None and self.interval > 0:
            self._task = asyncio.create_task(self._run(), name="aovs-report-state")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.report_once()
            except RpcError as exc:
                LOG.warning("report_state failed: %s", exc)
            except Exception:  # a bad configurations callback must not kill the heartbeat
                LOG.exception("report_state: building the agent state failed")
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))
