"""Local VLANs: one per network on this hypervisor, the tag its ports carry inside br-int.

Stability matters more than anything: the local VLAN is in ``Port.tag``, in every translation
flow and (as the conntrack zone) in firewall flows, so an agent restart must recompute the SAME
numbers or it would rewrite every flow. They are recovered from what OVSDB already says
(``Port.other_config`` net_uuid/tag, as neutron writes it) and from the snapshot, and a network
that comes back asks for the number it had before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aovs.pipelines.tables import DEAD_VLAN_TAG

MIN_VLAN = 1
MAX_VLAN = DEAD_VLAN_TAG - 1  # 4094; 4095 is the dead VLAN


class VlansExhausted(Exception):
    """Every local VLAN 1..4094 is in use on this host."""


class LocalVlanAllocator:
    """network id <-> local VLAN: the network's own previous VLAN when free, else the lowest free
    one that no other network was promised (a restart restores hints before allocating)."""

    def __init__(self) -> None:
        self._by_network: dict[str, int] = {}
        self._by_vlan: dict[int, str] = {}
        self._previous: dict[str, int] = {}  # promised back to these networks (released/hints)

    def __len__(self) -> int:
        return len(self._by_network)

    def get(self, network_id: str) -> int | None:
        return self._by_network.get(network_id)

    def assignments(self) -> Mapping[str, int]:
        return dict(self._by_network)

    def allocate(self, network_id: str, preferred: int | None = None) -> int:
        """The network's VLAN: the one it has, else ``preferred`` or its previous one if free,
        else the lowest free one. Raises :class:`VlansExhausted`."""
        current = self._by_network.get(network_id)
        if current is not None:
            return current
        for candidate in (preferred, self._previous.get(network_id)):
            if candidate is not None and self._free(candidate):
                return self._take(network_id, candidate)
        promised = set(self._previous.values())
        fallback = None
        for vlan in range(MIN_VLAN, MAX_VLAN + 1):
            if vlan in self._by_vlan:
                continue
            if vlan not in promised:
                return self._take(network_id, vlan)
            fallback = fallback or vlan
        if fallback is None:
            raise VlansExhausted(f"all {MAX_VLAN} local VLANs are in use")
        return self._take(network_id, fallback)  # only promised ones left: break a promise

    def reserve(self, network_id: str, vlan: int) -> bool:
        """Adopt a VLAN found on the switch (OVSDB) or in the snapshot; False on a conflict."""
        if self._by_network.get(network_id) == vlan:
            return True
        if network_id in self._by_network or not self._free(vlan):
            return False
        self._take(network_id, vlan)
        return True

    def remember(self, hints: Iterable[tuple[str, int]]) -> None:
        """Offer these VLANs back to these networks when they next allocate (snapshot hints)."""
        for network_id, vlan in hints:
            if MIN_VLAN <= vlan <= MAX_VLAN:
                self._previous.setdefault(network_id, vlan)

    def release(self, network_id: str) -> int | None:
        vlan = self._by_network.pop(network_id, None)
        if vlan is not None:
            del self._by_vlan[vlan]
            self._previous[network_id] = vlan
        return vlan

    def _free(self, vlan: int) -> bool:
        return MIN_VLAN <= vlan <= MAX_VLAN and vlan not in self._by_vlan

    def _take(self, network_id: str, vlan: int) -> int:
        self._by_network[network_id] = vlan
        self._by_vlan[vlan] = network_id
        # a network that later takes "its previous" VLAN must not steal this one
        for other, hint in list(self._previous.items()):
            if hint == vlan and other != network_id:
                del self._previous[other]
        self._previous.pop(network_id, None)
        return vlan
