"""PNG plots of a run: time against ports (scaling) and the single-reboot latency distribution."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the Agg backend


def scaling_plot(rows: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Seconds (left) and peak RSS (right) against ports, log-log, with the practical limit."""
    rows = [row for row in rows if row.get("cold_boot_seconds") is not None]
    if len(rows) < 2:
        return None
    ports = [row["ports"] for row in rows]
    figure, (times, memory) = plt.subplots(1, 2, figsize=(11, 4.5))
    series = (
        ("cold_boot_seconds", "cold boot (agent start -> verified, RPC included)", "o-"),
        ("ovs_restart_seconds", "OVS restart (OpenFlow up -> verified)", "s-"),
        ("limit_seconds", "practical limit (ovs-ofctl --bundle)", "k--"),
    )
    for key, label, style in series:
        values = [row.get(key) for row in rows]
        if all(value is not None for value in values):
            times.plot(ports, values, style, label=label)
    times.set_xscale("log")
    times.set_yscale("log")
    times.set_xlabel("VM ports")
    times.set_ylabel("seconds")
    times.set_title("time to a correct dataplane")
    times.grid(True, which="both", alpha=0.3)
    times.legend(fontsize=8)
    rss = [row.get("peak_rss_mb") for row in rows]
    if all(value is not None for value in rss):
        memory.plot(ports, rss, "o-", color="tab:purple", label="agent peak RSS (cold boot)")
    memory.axhline(150, color="tab:red", linestyle=":", label="target 150 MB")
    memory.set_xscale("log")
    memory.set_xlabel("VM ports")
    memory.set_ylabel("MB")
    memory.set_title("agent memory")
    memory.grid(True, which="both", alpha=0.3)
    memory.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def latency_plot(samples_ms: Mapping[str, Sequence[float]], ports: int, path: Path) -> Path | None:
    """Cumulative distribution of single-VM-reboot latencies, one curve per measure."""
    labels = {
        "ofport_to_flows": "ofport in OVSDB -> flows on the switch",
        "agent_logged": "agent's own log (event -> bundle committed)",
        "command_to_flows": "ovs-vsctl del-port -> flows (OVS's own work included)",
    }
    present = {k: sorted(v) for k, v in samples_ms.items() if v}
    if not present:
        return None
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for key, values in present.items():
        fractions = [(index + 1) / len(values) for index in range(len(values))]
        axis.step(
            values, fractions, where="post", label=f"{labels.get(key, key)} (n={len(values)})"
        )
    axis.axvline(50, color="tab:red", linestyle=":", label="target p99 50 ms")
    axis.set_xscale("log")
    axis.set_xlabel("milliseconds (log)")
    axis.set_ylabel("fraction of reboots")
    axis.set_title(f"single VM reboot latency, {ports} ports on the host")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
