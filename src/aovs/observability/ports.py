"""The ports' current states and their most recent transitions, for the gauge and `status`."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from aovs.observability.status import PortStatus, PortTransition, ReportedPortState

DEFAULT_RECENT = 50


class PortLedger:
    """Current state per iface-id plus a ring of the last ``keep`` transitions.

    A ``removed`` transition is kept in the ring but the port leaves the current set, so the
    per-state counts are always the ports the agent knows now.
    """

    def __init__(self, keep: int = DEFAULT_RECENT, clock: Callable[[], float] = time.time) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self._clock = clock
        self._ports: dict[str, PortStatus] = {}
        self._recent: collections.deque[PortTransition] = collections.deque(maxlen=keep)

    def record(
        self,
        iface_id: str,
        state: ReportedPortState,
        seconds: float | None = None,
        ofport: int | None = None,
        reason: str = "",
    ) -> PortTransition:
        previous = self._ports.get(iface_id)
        if ofport is None and previous is not None:
            ofport = previous.ofport  # a state change does not forget the port's number
        # model_construct: the arguments are typed by this signature; validation would be most
        # of a transition's cost on the agent's hot path
        transition = PortTransition.model_construct(
            iface_id=iface_id,
            state=state,
            at=self._clock(),
            seconds=seconds,
            ofport=ofport,
            reason=reason,
        )
        self._recent.append(transition)
        if state is ReportedPortState.REMOVED:
            self._ports.pop(iface_id, None)
        else:
            self._ports[iface_id] = PortStatus.model_construct(
                iface_id=iface_id,
                state=state,
                ofport=ofport,
                since=transition.at,
                last_seconds=seconds,
                reason=reason,
            )
        return transition

    def counts(self) -> dict[ReportedPortState, int]:
        """Ports per state, every state present (zero included) so gauges never go missing."""
        counts = dict.fromkeys(ReportedPortState, 0)
        del counts[ReportedPortState.REMOVED]
        for port in self._ports.values():
            counts[port.state] += 1
        return counts

    def ports(self) -> tuple[PortStatus, ...]:
        return tuple(sorted(self._ports.values(), key=lambda p: p.iface_id))

    def recent(self) -> tuple[PortTransition, ...]:
        return tuple(self._recent)
