"""Trunk and SubPort pushes and pulls (neutron 29's primitives) into the one resource cache."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from aovs.rpc.resources import (
    PUSH_PARSERS,
    SUBPORT,
    TRUNK,
    ResourceCache,
    SubPortPush,
    SubPortValue,
    TrunkPush,
    TrunkValue,
    consumed_resources,
    missing_as_deleted,
    resource_topic,
    subport_push,
    trunk,
    trunk_push,
)

TRUNK_ID = "11111111-2222-4333-8444-555555555555"
PARENT = "aaaaaaaa-2222-4333-8444-555555555555"
SUB1 = "bbbbbbbb-2222-4333-8444-555555555555"
SUB2 = "cccccccc-2222-4333-8444-555555555555"


def _subport(port_id: str, vlan: int) -> dict[str, Any]:
    # neutron 29's SubPort(...).obj_to_primitive(target_version="1.0"), verbatim shape
    return {
        "versioned_object.name": "SubPort",
        "versioned_object.namespace": "versionedobjects",
        "versioned_object.version": "1.0",
        "versioned_object.data": {"port_id": port_id, "trunk_id": TRUNK_ID,
                                  "segmentation_type": "vlan", "segmentation_id": vlan},
        "versioned_object.changes": ["segmentation_id", "port_id", "trunk_id",
                                     "segmentation_type"],
    }  # fmt: skip


def _trunk(*subports: dict[str, Any], revision: int = 2) -> dict[str, Any]:
    # neutron 29's Trunk(...).obj_to_primitive(target_version="1.1")
    return {
        "versioned_object.name": "Trunk",
        "versioned_object.namespace": "versionedobjects",
        "versioned_object.version": "1.1",
        "versioned_object.data": {
            "admin_state_up": True, "id": TRUNK_ID, "project_id": "x", "name": "",
            "port_id": PARENT, "status": "DOWN", "sub_ports": list(subports),
            "revision_number": revision,
        },
        "versioned_object.changes": ["name", "sub_ports", "id", "port_id"],
    }  # fmt: skip


def test_trunk_parses_with_its_subports_sorted() -> None:
    value = trunk(_trunk(_subport(SUB2, 102), _subport(SUB1, 101)))
    assert value == TrunkValue(
        TRUNK_ID, PARENT,
        (SubPortValue(SUB1, TRUNK_ID, "vlan", 101), SubPortValue(SUB2, TRUNK_ID, "vlan", 102)),
        "DOWN", 2,
    )  # fmt: skip
    assert value.sub_ports[0].id == SUB1  # a subport is keyed by its port


def test_pushes_parse_and_topics_are_neutrons() -> None:
    push = subport_push({"resource_list": [_subport(SUB1, 101)], "event_type": "created"})
    assert push == SubPortPush("created", (SubPortValue(SUB1, TRUNK_ID, "vlan", 101),))
    deleted = trunk_push({"resource_list": [_trunk()], "event_type": "deleted"})
    assert isinstance(deleted, TrunkPush) and deleted.trunks[0].id == TRUNK_ID
    assert PUSH_PARSERS[TRUNK] is trunk_push and PUSH_PARSERS[SUBPORT] is subport_push
    assert consumed_resources([TRUNK, SUBPORT]) == {"AddressGroup": "1.2", "Trunk": "1.1",
                                                    "SubPort": "1.0"}  # fmt: skip
    assert resource_topic(SUBPORT, "1.0") == "neutron-vo-SubPort-1.0"


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("port_id",), None, "without a port_id"),
        (("segmentation_id",), 0, "no VLAN id"),
        (("segmentation_id",), 4095, "no VLAN id"),
        (("segmentation_id",), True, "no VLAN id"),
        (("trunk_id",), "", "without a trunk_id"),
    ],
)
def test_malformed_subports_are_refused(path: tuple[str, ...], value: Any, reason: str) -> None:
    bad = copy.deepcopy(_subport(SUB1, 101))
    bad["versioned_object.data"][path[0]] = value
    with pytest.raises(ValueError, match=reason):
        subport_push({"resource_list": [bad], "event_type": "created"})
    with pytest.raises(ValueError, match="sub_ports is not a list"):
        trunk({**_trunk(), "versioned_object.data": {"id": TRUNK_ID, "port_id": PARENT,
                                                     "sub_ports": {}}})  # fmt: skip


def test_subport_pushes_are_folded_into_their_trunk() -> None:
    """neutron pushes the subports added or removed, never the trunk again: the cache keeps the
    trunk's value current from them, and ignores subports of a trunk it does not know."""
    cache = ResourceCache()
    cache.apply(TrunkPush("updated", (trunk(_trunk(_subport(SUB1, 101))),)))
    added = subport_push({"resource_list": [_subport(SUB2, 102)], "event_type": "created"})
    assert cache.apply(added) == [TRUNK_ID]
    known = cache.get(TRUNK, TRUNK_ID)
    assert isinstance(known, TrunkValue)
    assert [(s.port_id, s.segmentation_id) for s in known.sub_ports] == [(SUB1, 101), (SUB2, 102)]
    assert cache.apply(added) == []  # the same push again changes nothing
    removed = subport_push({"resource_list": [_subport(SUB1, 101)], "event_type": "deleted"})
    assert cache.apply(removed) == [TRUNK_ID]
    known = cache.get(TRUNK, TRUNK_ID)
    assert isinstance(known, TrunkValue) and [s.port_id for s in known.sub_ports] == [SUB2]
    assert (SUBPORT, SUB2) not in cache  # kept in the trunk, not on their own
    other = copy.deepcopy(_subport(SUB1, 101))
    other["versioned_object.data"]["trunk_id"] = "99999999-2222-4333-8444-555555555555"
    assert cache.apply(subport_push({"resource_list": [other], "event_type": "created"})) == []
    # a trunk deleted is forgotten; a pull that does not find one settles as deleted
    assert cache.apply(TrunkPush("deleted", (TrunkValue(TRUNK_ID, PARENT),))) == [TRUNK_ID]
    assert cache.get(TRUNK, TRUNK_ID) is None
    gone = missing_as_deleted(TRUNK, [PARENT], TrunkPush("updated", ()))
    assert isinstance(gone, TrunkPush) and gone.event_type == "deleted"
