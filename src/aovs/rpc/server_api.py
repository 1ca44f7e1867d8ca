"""The calls neutron's OVS agent makes to neutron-server, with neutron's names and versions.

Every call goes through neutron-lib's back-off (per-method timeout doubled after a timeout, a
jittered pause) and is retried when the broker connection drops mid-call (all of them are
idempotent on the server). Replies come back as aovs.model values (see server_replies).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from aovs.model import TunnelEndpoint
from aovs.rpc.amqp import RpcTransport
from aovs.rpc.backoff import BackingOffTimeouts
from aovs.rpc.errors import RpcConnectionLost, RpcError, RpcTimeout
from aovs.rpc.server_replies import (
    DeviceListResult,
    DeviceOutcome,
    DevicesDetails,
    FailedDevice,
    SecurityGroupInfo,
    device_list_result,
    devices_details,
    security_group_info,
    tunnel_endpoints,
    unique,
)

LOG = logging.getLogger(__name__)

PLUGIN_TOPIC = "q-plugin"
REPORTS_TOPIC = "q-reports-plugin"
ISO8601_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
SG_INFO_VERSION = "1.3"  # sg_member_ips as [ip, mac] pairs

# Chosen by measurement (benchmarks/bench_rpc.py sweeps it): against the simulator, 1000
# devices cost least with batches of 100-250 and 4 in flight; smaller batches pay per-message
# overhead, one huge batch serialises the server's work and the JSON (de)coding.
DEFAULT_DETAILS_BATCH = 200
DEFAULT_DETAILS_CONCURRENCY = 4


class NeutronServerApi:
    """neutron-server's agent-facing RPC API (PluginApi, SecurityGroupServerRpcApi,
    PluginReportStateAPI), for one agent host.
    """

    def __init__(
        self,
        transport: RpcTransport,
        host: str,
        *,
        rpc_response_timeout: float = 60.0,
        rpc_response_max_timeout: float = 600.0,
        details_batch_size: int = DEFAULT_DETAILS_BATCH,
        details_concurrency: int = DEFAULT_DETAILS_CONCURRENCY,
        device_list_batch_size: int = 100,
        connection_retries: int = 2,
        backoff: BackingOffTimeouts | None = None,
    ) -> None:
        if details_batch_size < 1 or details_concurrency < 1 or device_list_batch_size < 1:
            raise ValueError("batch sizes and concurrency must be >= 1")
        self.transport = transport
        self.host = host
        self.agent_id = f"ovs-agent-{host}"
        self.details_batch_size = details_batch_size
        self.details_concurrency = details_concurrency
        self.device_list_batch_size = device_list_batch_size
        self.connection_retries = connection_retries
        self.timeouts = backoff or BackingOffTimeouts(
            rpc_response_timeout, max(rpc_response_max_timeout, rpc_response_timeout)
        )

    # ---- ports -------------------------------------------------------------------------------

    async def get_devices_details(self, devices: Iterable[str]) -> DevicesDetails:
        """``get_devices_details_list_and_failed_devices`` [1.5] for any number of devices.

        Split into batches run ``details_concurrency`` at a time. Never raises for the server's
        sake: a batch that times out or fails puts its devices among the failed ones.
        """
        wanted = unique(devices)
        batches = _chunks(wanted, self.details_batch_size)
        limit = asyncio.Semaphore(self.details_concurrency)

        async def one(batch: list[str]) -> DevicesDetails:
            async with limit:
                try:
                    reply = await self._call(
                        PLUGIN_TOPIC,
                        "get_devices_details_list_and_failed_devices",
                        {"devices": batch, "agent_id": self.agent_id, "host": self.host},
                        version="1.5",
                    )
                except RpcError as exc:
                    LOG.warning("device details for %d devices failed: %s", len(batch), exc)
                    reason = f"{type(exc).__name__}: {exc}"
                    return DevicesDetails({d: FailedDevice(d, reason) for d in batch})
            return devices_details(batch, reply)

        outcomes: dict[str, DeviceOutcome] = {}
        for details in await asyncio.gather(*(one(batch) for batch in batches)):
            outcomes.update(details.outcomes)
        return DevicesDetails(outcomes)

    async def update_device_list(
        self,
        up: Iterable[str] = (),
        down: Iterable[str] = (),
        *,
        refresh_tunnels: bool = False,
    ) -> DeviceListResult:
        """``update_device_list`` [1.9], in batches of ``device_list_batch_size`` (neutron's
        ``rpc_resources_processing_step``), sent one after the other as neutron does.

        A real server spends ~0.1 s per port: never await this on the dataplane's critical path
        (the agent's :class:`aovs.agent.reporter.DeviceReporter` sends it in the background).
        Raises RpcError when a batch fails as a whole; devices of batches already sent are then
        reported again by the caller.
        """
        up_list, down_list = unique(up), unique(down)
        step = self.device_list_batch_size
        result = DeviceListResult()
        for start in range(0, max(len(up_list), len(down_list)), step):
            reply = await self._call(
                PLUGIN_TOPIC,
                "update_device_list",
                {
                    "devices_up": up_list[start : start + step],
                    "devices_down": down_list[start : start + step],
                    "agent_id": self.agent_id,
                    "host": self.host,
                    "refresh_tunnels": refresh_tunnels,
                },
                version="1.9",
            )
            result = result.merged(device_list_result(reply))
        return result

    # ---- security groups, tunnels ------------------------------------------------------------

    async def security_group_info_for_devices(self, devices: Iterable[str]) -> SecurityGroupInfo:
        """``security_group_info_for_devices`` [1.3]: groups, rules, remote security group and
        address group members. The server reads the version from the ``call_version``
        argument (as neutron's client sends it); without it, it answers 1.2 with a warning."""
        reply = await self._call(
            PLUGIN_TOPIC,
            "security_group_info_for_devices",
            {"devices": unique(devices), "call_version": SG_INFO_VERSION},
            version=SG_INFO_VERSION,
        )
        return security_group_info(reply)

    async def tunnel_sync(
        self, tunnel_ip: str, tunnel_type: str | None = None
    ) -> tuple[TunnelEndpoint, ...]:
        """``tunnel_sync`` [1.4]: every tunnel endpoint (this host included); the server also
        fans ``tunnel_update`` out to the other agents."""
        reply = await self._call(
            PLUGIN_TOPIC,
            "tunnel_sync",
            {"tunnel_ip": tunnel_ip, "tunnel_type": tunnel_type, "host": self.host},
            version="1.4",
        )
        return tunnel_endpoints(reply)

    # ---- agent state -------------------------------------------------------------------------

    async def report_state(
        self, agent_state: dict[str, Any], *, within: float | None = None
    ) -> str | None:
        """``report_state`` as a call (as the OVS agent does): "new", "alive" or "revived".

        With ``within`` (the heartbeat passes its interval), the call waits that long and no
        more, with no back-off: a report the server lost (an RPC server that stops after
        taking it) is stale by the next heartbeat anyway, which is its retry. neutron's agent
        waits ``rpc_response_timeout`` (60 s) and more for it, so a restarted server saw no
        heartbeat from it for a minute."""
        reply = await self._call(
            REPORTS_TOPIC,
            "report_state",
            {
                "agent_state": {"agent_state": agent_state},
                "time": datetime.now(UTC).strftime(ISO8601_TIME_FORMAT),
            },
            version="1.2",
            retries=0,  # the next heartbeat is the retry
            within=within,
        )
        return None if reply is None else str(reply)

    async def has_alive_neutron_server(self) -> bool:
        return bool(await self._call(REPORTS_TOPIC, "has_alive_neutron_server", {}, version="1.2"))

    # ---- the one call path -------------------------------------------------------------------

    async def _call(
        self,
        topic: str,
        method: str,
        args: dict[str, Any],
        *,
        version: str,
        retries: int | None = None,
        within: float | None = None,
    ) -> Any:
        """With ``within``, that fixed limit and no back-off; else neutron's backing-off
        timeout of ``method``."""
        attempts = 1 + (self.connection_retries if retries is None else retries)
        for attempt in range(1, attempts + 1):
            limit = self.timeouts.timeout_for(method) if within is None else within
            try:
                return await self.transport.call(topic, method, args, version=version,
                                                 timeout=limit)  # fmt: skip
            except RpcTimeout:
                if within is not None:
                    LOG.warning("timeout in RPC method %s after %g s", method, limit)
                    raise
                wait = self.timeouts.on_timeout(method)
                LOG.error(
                    "timeout in RPC method %s after %g s; next timeout %g s, waiting %.1f s",
                    method,
                    limit,
                    self.timeouts.timeout_for(method),
                    wait,
                )
                await asyncio.sleep(wait)
                raise
            except RpcConnectionLost as exc:
                if attempt == attempts:
                    raise
                LOG.warning("%s: %s; retrying (%d/%d)", method, exc, attempt, attempts - 1)
        raise AssertionError("unreachable")


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
