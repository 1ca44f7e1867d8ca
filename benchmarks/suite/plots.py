"""PNG plots of a run: time against ports (scaling) and the single-reboot latency distribution."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the Agg backend


def _series(axis: Any, rows: Sequence[Mapping[str, Any]], key: str, label: str, style: str) -> None:
    """One curve through the rows that measured ``key`` (at least two)."""
    points = [(row["ports"], row[key]) for row in rows if row.get(key) is not None]
    if len(points) >= 2:
        axis.plot([p for p, _ in points], [v for _, v in points], style, label=label)


def _log_axes(axis: Any, ylabel: str, title: str) -> None:
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("VM ports")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7)


def scaling_plot(rows: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Seconds, ovs-vswitchd CPU seconds and peak RSS against ports, log-log, with the limits."""
    measured = ("cold_boot_seconds", "cold_plug_seconds")
    rows = [row for row in rows if any(row.get(key) is not None for key in measured)]
    if len(rows) < 2:
        return None
    figure, (times, switch, memory) = plt.subplots(1, 3, figsize=(15, 4.5))
    for key, label, style in (
        ("cold_boot_seconds", "cold boot (agent start -> verified, RPC included)", "o-"),
        ("ovs_restart_seconds", "OVS restart (OpenFlow up -> verified)", "s-"),
        ("limit_seconds", "limit (ovs-ofctl --bundle)", "k--"),
        ("cold_plug_seconds", "cold boot, agent running (ovs-vsctl -> verified)", "^-"),
        ("plug_limit_seconds", "limit (ovs-vsctl with tags + ovs-ofctl --bundle)", "k:"),
    ):
        _series(times, rows, key, label, style)
    _log_axes(times, "seconds", "time to a correct dataplane")
    for key, label, style in (
        ("cold_boot_vswitchd_cpu_seconds", "cold boot (agent start)", "o-"),
        ("cold_plug_vswitchd_cpu_seconds", "cold boot, agent running", "^-"),
        ("plug_limit_vswitchd_cpu_seconds", "limit (ovs-vsctl with tags + --bundle)", "k:"),
    ):
        _series(switch, rows, key, label, style)
    _log_axes(switch, "CPU seconds", "ovs-vswitchd CPU (until every Port.tag)")
    _series(memory, rows, "peak_rss_mb", "agent peak RSS (cold boot)", "o-")
    _series(memory, rows, "cold_plug_peak_rss_mb", "agent peak RSS (agent running)", "^-")
    memory.axhline(150, color="tab:red", linestyle=":", label="target 150 MB (1000 ports)")
    memory.plot([5000], [400], "rv", label="target 400 MB at 5000 ports")
    memory.set_xscale("log")
    memory.set_xlabel("VM ports")
    memory.set_ylabel("MB")
    memory.set_title("agent memory")
    memory.grid(True, which="both", alpha=0.3)
    memory.legend(fontsize=7)
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
