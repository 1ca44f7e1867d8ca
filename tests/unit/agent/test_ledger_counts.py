"""The ledger's compact reference counts against a plain count per flow (hypothesis)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from aovs.agent.ledger import FlowLedger
from aovs.openflow.flows import Flow, Match, Output

# keys 0-3, two actions each: the same key with other actions is two owners disagreeing
POOL = [Flow(60, 90, Match(reg5=key), (Output(port),)) for key in range(4) for port in (1, 2)]
OWNERS = [("port", str(i)) for i in range(3)]

steps = st.lists(
    st.tuples(st.sampled_from(OWNERS), st.frozensets(st.sampled_from(POOL), max_size=4)),
    max_size=30,
)


@given(steps)
def test_desired_is_every_flow_some_owner_wants(
    changes: list[tuple[tuple[str, str], frozenset[Flow]]],
) -> None:
    ledger = FlowLedger("br")
    owners: dict[tuple[str, str], frozenset[Flow]] = {}
    for owner, flows in changes:
        ledger.replace(owner, flows)
        owners[owner] = flows
        counts = Counter(flow for wanted in owners.values() for flow in wanted)
        assert ledger.desired() == set(counts)
        assert len(ledger) == len(counts)


@given(steps)
def test_deltas_applied_by_key_reach_the_desired_flows(
    changes: list[tuple[tuple[str, str], frozenset[Flow]]],
) -> None:
    # one action per key (owners agree): a switch applying each delta ends with the desired set
    agreeing = [
        (owner, frozenset(flow for flow in flows if flow.actions == (Output(1),)))
        for owner, flows in changes
    ]
    ledger = FlowLedger("br")
    switch: dict[object, Flow] = {}
    for owner, flows in agreeing:
        ledger.replace(owner, flows)
        delta = ledger.take_delta()
        for flow in delta.remove:
            switch.pop(flow.key, None)
        for flow in delta.add:
            switch[flow.key] = flow
        assert set(switch.values()) == ledger.desired()
