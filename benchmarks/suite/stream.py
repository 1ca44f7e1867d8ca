"""A steady packet stream through the dataplane, to count what an event loses.

One VM sends UDP to a MAC nobody owns: br-int's firewall passes it (egress any), NORMAL floods
it on the VM's network, br-phys tags it with the segmentation VLAN and it leaves by the uplink.
Packets are injected with ``ovs-appctl netdev-dummy/receive`` one by one; the uplink's
``tx pkts`` (``ovs-ofctl dump-ports``) says how many came out. Nothing else sends on it.
"""

from __future__ import annotations

import asyncio
import re

from aovs.sandbox import OVSSandbox
from benchmarks.suite.world import PHYSICAL_BRIDGE, UPLINK, VmPort, appctl, ofctl

INTERVAL = 0.01  # seconds between packets: ~60-90 packets/s with appctl's own cost
UNKNOWN_MAC = "fa:16:3e:ff:ff:01"


def udp_packet(vm: VmPort, ofport: int, ip: str) -> str:
    return (f"in_port({ofport}),eth(src={vm.mac},dst={UNKNOWN_MAC}),eth_type(0x0800),"
            f"ipv4(src={ip},dst=10.255.255.254,proto=17,tos=0,ttl=64,frag=no),"
            "udp(src=1000,dst=2000)")  # fmt: skip


async def uplink_tx(sandbox: OVSSandbox) -> int:
    out = await ofctl(sandbox, "dump-ports", PHYSICAL_BRIDGE, UPLINK)
    match = re.search(r"tx pkts=(\d+)", out)
    if match is None:
        raise ValueError(f"no tx counter for {UPLINK}: {out.strip()[:200]}")
    return int(match.group(1))


class PacketStream:
    def __init__(self, sandbox: OVSSandbox, vm: VmPort, ofport: int, ip: str) -> None:
        self.sandbox = sandbox
        self.vm = vm
        self.packet = udp_packet(vm, ofport, ip)
        self.injected = 0
        self.failed_injections = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await appctl(self.sandbox, "netdev-dummy/receive", self.vm.tap, self.packet)
                self.injected += 1
            except Exception:  # vswitchd busy or gone: not injected, so not lost either
                self.failed_injections += 1
            await asyncio.sleep(INTERVAL)

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="bench-packet-stream")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def burst(self, seconds: float) -> tuple[int, int]:
        """Run for ``seconds``; (injected, delivered) over that time (a self-check)."""
        before_tx, before_in = await uplink_tx(self.sandbox), self.injected
        self.start()
        await asyncio.sleep(seconds)
        await self.stop()
        await asyncio.sleep(0.1)
        return self.injected - before_in, await uplink_tx(self.sandbox) - before_tx
