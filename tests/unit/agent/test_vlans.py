from __future__ import annotations

import pytest

from aovs.agent.vlans import MAX_VLAN, LocalVlanAllocator, VlansExhausted


def test_lowest_free_and_stable_per_network() -> None:
    vlans = LocalVlanAllocator()
    assert vlans.allocate("a") == 1
    assert vlans.allocate("b") == 2
    assert vlans.allocate("a") == 1
    assert vlans.release("a") == 1
    assert vlans.allocate("c") == 3  # 1 stays promised to "a" while others are free
    assert vlans.allocate("a") == 1


def test_a_returning_network_gets_its_previous_vlan_back() -> None:
    vlans = LocalVlanAllocator()
    vlans.allocate("a")
    vlans.allocate("b")
    vlans.release("a")
    assert vlans.allocate("a") == 1


def test_hints_are_kept_away_from_other_networks() -> None:
    vlans = LocalVlanAllocator()
    vlans.remember([("restored", 1), ("other", 3)])
    assert vlans.allocate("new") == 2  # 1 and 3 are promised
    assert vlans.allocate("restored") == 1
    assert vlans.allocate("other") == 3


def test_reserve_conflicts_and_range() -> None:
    vlans = LocalVlanAllocator()
    assert vlans.reserve("a", 7)
    assert not vlans.reserve("b", 7)
    assert not vlans.reserve("c", 4095)
    assert vlans.get("a") == 7


def test_exhaustion_is_an_error_not_a_crash() -> None:
    vlans = LocalVlanAllocator()
    for index in range(MAX_VLAN):
        vlans.allocate(f"n{index}")
    with pytest.raises(VlansExhausted):
        vlans.allocate("one-too-many")
