"""Pure helpers of the reboot benchmark: no I/O, unit-tested (tests/unit/test_bench_reboot.py).

- ``percentile``: nearest-rank on the sorted values (the figures' p50/p99);
- ``mentions_ofport``: does a flow (a flow-monitor line or a dump line) name an ofport, in any
  of the forms ovs-ofctl prints (``in_port=N``, ``output:N``, ``reg5=0xN``, ``0xN->reg5``);
- ``rewrite_port_flows``: one port's flows moved from its old ofport to its new one, as an
  ``ovs-ofctl --bundle add-flows`` file (neutron's way of re-wiring a rebooted port);
- ``datapath_ports`` (``dpif/show``), ``trace_outputs``/``trace_delivers`` (ofproto/trace),
  ``json_messages`` (the unixctl JSON-RPC stream), ``summarize`` (a series' figures).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_COOKIE = re.compile(r"cookie=0x[0-9a-f]+, ?")
_DPIF_PORT = re.compile(r"^\s+(\S+) (\d+)/(\d+|none):", re.MULTILINE)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest rank: the value at ``pct`` % of the sorted list (p0 the least, p100 the most)."""
    if not values:
        raise ValueError("no values")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} outside 0..100")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def ofport_pattern(ofport: int) -> re.Pattern[str]:
    """Every way a flow names ``ofport``: matched as in_port or reg5 (the firewall's port
    register), loaded into reg5, or output to."""
    n, h = ofport, f"0x{ofport:x}"
    return re.compile(
        rf"(?:\bin_port={n}|\boutput:{n}|\breg5={h}|:{h}->reg5|:{h}->NXM_NX_REG5\[\])(?![\w])"
    )


def mentions_ofport(line: str, ofport: int) -> bool:
    return ofport_pattern(ofport).search(line) is not None


def strip_cookie(line: str) -> str:
    """A dump-flows line without its cookie (``--bundle add-flows`` then keeps none)."""
    return _COOKIE.sub("", line.strip())


def flow_key(line: str) -> str:
    """The part of a dump line before its actions: table, priority and match."""
    return strip_cookie(line).split(" actions=", 1)[0].strip()


def rewrite_port_flows(lines: Iterable[str], old: int, new: int) -> list[str]:
    """An add-flows file moving the flows that name ``old`` to ``new``: flows whose key changes
    are deleted by key (``delete_strict``) and added anew; flows whose key stays (a flood list
    naming the port in its actions) are added over themselves, which replaces their actions.
    Deletes go first, as in a bundle that must never hold both ports' flows."""
    pattern = ofport_pattern(old)
    hexa_old, hexa_new = f"0x{old:x}", f"0x{new:x}"

    def moved(text: str) -> str:
        def swap(found: re.Match[str]) -> str:
            token = found.group(0)
            if hexa_old in token:
                return token.replace(hexa_old, hexa_new)
            return token[: -len(str(old))] + str(new)

        return pattern.sub(swap, text)

    deletes, adds = [], []
    for raw in lines:
        line = strip_cookie(raw)
        if not line or pattern.search(line) is None:
            continue
        replaced = moved(line)
        if flow_key(replaced) != flow_key(line):
            deletes.append(f"delete_strict {flow_key(line)}")
        adds.append(replaced)
    return deletes + adds


def datapath_ports(dpif_show: str) -> dict[str, int]:
    """``ovs-appctl dpif/show``: port name -> datapath port number (patch ports have none)."""
    return {
        found.group(1): int(found.group(3))
        for found in _DPIF_PORT.finditer(dpif_show)
        if found.group(3) != "none"
    }


def datapath_actions(trace: str) -> str:
    """The last ``Datapath actions:`` of an ofproto/trace (after every ``--ct-next``
    recirculation); "" when the trace has none."""
    lines = [ln for ln in trace.splitlines() if ln.startswith("Datapath actions:")]
    return lines[-1].split(":", 1)[1].strip() if lines else ""


def action_tokens(actions: str) -> list[str]:
    """Datapath actions split at the commas outside parentheses."""
    tokens, depth, token = [], 0, ""
    for char in actions + ",":
        if char == "," and depth == 0:
            if token.strip():
                tokens.append(token.strip())
            token = ""
            continue
        depth += (char == "(") - (char == ")")
        token += char
    return tokens


def trace_outputs(trace: str) -> set[int]:
    """The datapath ports a traced packet finally leaves by."""
    return {int(t) for t in action_tokens(datapath_actions(trace)) if t.isdigit()}


def trace_delivers(trace: str, port: int | None, push_vlan: int | None = None) -> bool:
    """True when the traced packet leaves by datapath port ``port`` (with ``push_vlan``: tagged
    with that VLAN on the way, as a packet to a physical network's uplink is)."""
    if port is None or port not in trace_outputs(trace):
        return False
    return push_vlan is None or f"push_vlan(vid={push_vlan}," in datapath_actions(trace)


def json_messages(buffer: bytes) -> tuple[list[Any], bytes]:
    """Complete JSON values at the start of ``buffer`` (unixctl's JSON-RPC stream) and the
    unparsed rest (an incomplete value, kept for the next read)."""
    decoder = json.JSONDecoder()
    text = buffer.decode(errors="surrogateescape")  # a read may end inside a character
    messages: list[Any] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return messages, b""
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return messages, text[position:].encode(errors="surrogateescape")
        messages.append(value)


SPANS = (
    ("cmd_to_ofport", "t_cmd", "t_ofport"),
    ("ofport_to_flow", "t_ofport", "t_flow"),
    ("ofport_to_forwarding", "t_ofport", "t_forward"),
    ("cmd_to_forwarding", "t_cmd", "t_forward"),
)


def span_ms(samples: Sequence[Mapping[str, Any]], start: str, end: str) -> list[float]:
    """``end - start`` in ms, of each successful sample that has both."""
    return [
        (s[end] - s[start]) * 1e3
        for s in samples
        if s.get("ok") and s.get(start) is not None and s.get(end) is not None
    ]


def summarize(prefix: str, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A series' figures from the stopwatch's per-reboot results (``t_cmd`` added by the
    benchmark): p50/p99/max in ms of each span both ends of which were seen, over the reboots
    that succeeded; ``_reboots``, ``_failures``, ``_trace_retried`` (first trace round failed)."""
    ok = [s for s in samples if s.get("ok")]
    out: dict[str, Any] = {
        f"{prefix}_reboots": len(samples),
        f"{prefix}_failures": len(samples) - len(ok),
    }
    for name, start, end in SPANS:
        values = span_ms(samples, start, end)
        if values:
            out[f"{prefix}_{name}_p50_ms"] = percentile(values, 50)
            out[f"{prefix}_{name}_p99_ms"] = percentile(values, 99)
            out[f"{prefix}_{name}_max_ms"] = max(values)
    if any("rounds" in s for s in ok):
        out[f"{prefix}_trace_retried"] = sum(1 for s in ok if s.get("rounds", 1) > 1)
    return out
