"""``aovs demo``: the main job end to end on a private OVS (and, as it grows, RabbitMQ + agent)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from aovs.sandbox import OVSSandbox


def run_demo(ports: int = 200, keep: bool = False) -> int:
    directory = Path(tempfile.mkdtemp(prefix="aovs-demo-", dir="/tmp"))
    sandbox = OVSSandbox(directory)
    started = time.monotonic()
    sandbox.start(physical_bridges=["br-phys"])
    print(f"sandbox up in {time.monotonic() - started:.2f}s at {directory}")
    try:
        args: list[str] = ["--may-exist", "add-br", "br-int", "--", "set", "Bridge", "br-int"]
        args += ["datapath_type=dummy", "fail-mode=secure", "protocols=OpenFlow13"]
        for index in range(ports):
            name = f"tap{index:05d}"
            args += ["--", "add-port", "br-int", name, "--", "set", "Interface", name,
                     "type=dummy", f"external_ids:iface-id=port-{index:05d}"]  # fmt: skip
        t0 = time.monotonic()
        sandbox.vsctl(*args)
        print(f"plugged {ports} ports in one transaction: {time.monotonic() - t0:.2f}s")
        print(sandbox.vsctl("show").splitlines()[0])
    finally:
        if keep:
            sandbox.stop()
        else:
            sandbox.remove()
    return 0
