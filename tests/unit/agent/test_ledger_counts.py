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
def test_desired_is_one_wanted_flow_per_wanted_key(
    changes: list[tuple[tuple[str, str], frozenset[Flow]]],
) -> None:
    ledger = FlowLedger("br")
    owners: dict[tuple[str, str], frozenset[Flow]] = {}
    for owner, flows in changes:
        ledger.replace(owner, flows)
        owners[owner] = flows
        wanted = Counter(flow for flows in owners.values() for flow in flows)
        desired = ledger.desired()
        assert desired <= set(wanted)
        assert {flow.key for flow in desired} == {flow.key for flow in wanted}
        assert len(ledger) == len(desired)


@given(steps)
def test_deltas_applied_by_key_reach_the_desired_flows(
    changes: list[tuple[tuple[str, str], frozenset[Flow]]],
) -> None:
    # owners agreeing or not: a switch applying each delta (strict deletes by key, then adds
    # replacing by key) ends with the desired set, one rule per key
    ledger = FlowLedger("br")
    switch: dict[object, Flow] = {}
    for owner, flows in changes:
        ledger.replace(owner, flows)
        delta = ledger.take_delta()
        assert len({flow.key for flow in delta.add}) == len(delta.add)
        for flow in delta.remove:
            switch.pop(flow.key, None)
        for flow in delta.add:
            switch[flow.key] = flow
        assert set(switch.values()) == ledger.desired()
