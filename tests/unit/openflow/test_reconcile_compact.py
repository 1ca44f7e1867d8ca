"""The reconciler's compact state: the desired set kept as its difference to the installed
one, ADD bytes cached per flow without their fixed head, bundle entries made when read."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aovs.openflow import codec
from aovs.openflow.bundle import BundleEntry
from aovs.openflow.fast_encoder import FastEncoder
from aovs.openflow.flowmod_cache import FlowModCache
from aovs.openflow.flows import Flow, Match, Output
from aovs.openflow.reconcile import (
    FlowModPlan,
    _FlowMods,
    pending_changes,
    plan_change,
    plan_sync,
    share_equal,
)

FlowKey = tuple[int, int, Match]
# keys 0-4, actions 1-2, a timeout or not: equal, modified (actions) and re-added (timeout)
flows = st.builds(
    lambda key, port, idle: Flow(10, 5, Match(reg5=key), (Output(port),), idle_timeout=idle),
    st.integers(0, 4),
    st.integers(1, 2),
    st.sampled_from([0, 30]),
)
flow_sets = st.lists(flows, max_size=6).map(lambda fs: {f.key: f for f in fs})


def _sent(plan: FlowModPlan) -> tuple[set[Flow], set[Flow], set[Flow]]:
    return set(plan.delete), set(plan.modify), set(plan.add)


@given(flow_sets, flow_sets, st.sets(st.integers(0, 4)))
def test_pending_changes_plan_what_the_full_diff_plans(
    installed: dict[FlowKey, Flow], desired: dict[FlowKey, Flow], opaque_ids: set[int]
) -> None:
    opaque = {key for key in installed if key[2].get("reg5") in opaque_ids}
    pending = pending_changes(installed, desired, opaque)
    assert _sent(plan_change(installed, pending, opaque)) == _sent(
        plan_sync(installed, desired, opaque)
    )
    # and the pending keys with the installed view are the desired set
    view = {**installed, **{k: f for k, f in pending.items() if f is not None}}
    assert {k: f for k, f in view.items() if pending.get(k, f) is not None} == desired


def test_installed_shares_the_desired_objects_where_equal() -> None:
    built = {f.key: f for f in (Flow(10, 5, Match(reg5=i), (Output(1),)) for i in range(3))}
    decoded = {key: f.replace() for key, f in built.items()}  # equal copies, as a dump makes
    changed = Flow(10, 5, Match(reg5=0), (Output(2),))
    decoded[changed.key] = changed
    opaque = {Flow(10, 5, Match(reg5=2)).key}
    share_equal(decoded, built, opaque)
    assert decoded[changed.key] is changed  # differs: left
    assert decoded[built_key(1)] is built[built_key(1)]  # equal: the desired object
    assert decoded[built_key(2)] is not built[built_key(2)]  # opaque: left for the re-add


def built_key(reg5: int) -> FlowKey:
    return (10, 5, Match(reg5=reg5))


@given(st.lists(flows, min_size=1, max_size=8))
def test_cached_adds_are_the_encoders_bytes(listed: list[Flow]) -> None:
    cache = FlowModCache(0xABC)
    encoder = FastEncoder()
    for flow in listed * 2:  # the second round from the cache
        assert cache.encode(flow, codec.ADD) == encoder.encode(flow, codec.ADD, 0xABC)
    distinct = set(listed)
    assert len(cache) == len(distinct) and cache.misses == len(distinct)
    for flow in distinct:
        delete = cache.encode(flow, codec.DELETE_STRICT)
        assert delete == encoder.encode(flow, codec.DELETE_STRICT, 0xABC)
        cache.forget(flow)
    assert len(cache) == 0  # strict deletes are not kept, forgotten ADDs are gone


def test_bundle_entries_are_made_in_order_when_read() -> None:
    a, b, c, d = (Flow(10, 5, Match(reg5=i), (Output(1),)) for i in range(4))
    foreign = BundleEntry(b"\x04" * 8, a)
    plan = FlowModPlan(delete=[b], modify=[c], add=[d])
    entries = _FlowMods([foreign], plan, FlowModCache(1))
    assert len(entries) == 4
    commands = [getattr(entry, "command", None) for entry in entries[0:4]]
    assert commands == [None, codec.DELETE_STRICT, codec.MODIFY_STRICT, codec.ADD]
    assert [entry.flow for entry in entries] == [a, b, c, d]
    assert entries[-1].flow == d and entries[1:3][1].flow == c


# -- the reconciler's desired and installed views through syncs, applies and failed bundles ----
class _Channel:
    """A connected switch that has been dumped (what a FlowReconciler asks of a channel)."""

    connected = True
    connections = 1

    def subscribe(self, _callback: object) -> object:
        return lambda: None


ops = st.lists(
    st.one_of(
        st.tuples(st.just("sync"), st.lists(flows, max_size=5), st.just([])),
        st.tuples(st.just("apply"), st.lists(flows, max_size=3), st.lists(flows, max_size=3)),
    ).flatmap(lambda op: st.tuples(st.just(op), st.booleans())),
    max_size=12,
)


@given(ops)
def test_desired_and_installed_follow_the_calls_as_a_plain_dict_would(
    steps: list[tuple[tuple[str, list[Flow], list[Flow]], bool]],
) -> None:
    import asyncio

    from aovs.openflow import reconcile
    from aovs.openflow.errors import BundleError

    fail = [False]

    async def commit(_channel: object, entries: list[object], **_: object) -> None:
        for entry in entries:
            entry.data  # type: ignore[attr-defined]  # noqa: B018 - encoded as it is sent
        if fail[0]:
            raise BundleError("refused")

    original = reconcile.commit_bundle
    reconcile.commit_bundle = commit  # type: ignore[assignment]
    try:
        reconciler = reconcile.FlowReconciler(_Channel(), 7)  # type: ignore[arg-type]
        reconciler._dumped_on = 1
        desired: dict[FlowKey, Flow] | None = None
        installed: dict[FlowKey, Flow] = {}
        for (kind, first, second), failing in steps:
            fail[0] = failing
            if kind == "sync":
                target = {f.key: f for f in first}
                if len(target) != len(set(first)):
                    continue  # two flows with one key: refused by the reconciler itself
                desired = target
                changes: dict[FlowKey, Flow | None] = {
                    **{k: None for k in installed if k not in target},
                    **target,
                }
                call = reconciler.sync(first)
            else:
                add, remove = {f.key: f for f in first}, second
                if len(add) != len(set(first)):
                    continue
                if desired is not None:
                    for flow in remove:
                        if desired.get(flow.key) == flow:
                            del desired[flow.key]
                    desired.update(add)
                changes = {**{f.key: None for f in remove}, **add}
                call = reconciler.apply(remove, first)
            try:
                asyncio.run(call)
            except BundleError:
                assert failing
            else:
                for key, want in changes.items():
                    if want is None:
                        installed.pop(key, None)
                    else:
                        installed[key] = want
            assert dict(reconciler.installed) == installed
            assert reconciler.desired == desired
    finally:
        reconcile.commit_bundle = original
