"""The FlowMod cache keeps one generation: a strict delete drops the flow's ADD bytes as it is
encoded, and once a generation was forgotten the encoder starts afresh."""

from __future__ import annotations

import pytest

from aovs.openflow import codec, flowmod_cache
from aovs.openflow.fast_encoder import FastEncoder
from aovs.openflow.flowmod_cache import FlowModCache
from aovs.openflow.flows import Flow, Match, Output

COOKIE = 0x1234


def _flow(key: int, port: int = 1) -> Flow:
    return Flow(10, 5, Match(reg5=key), (Output(port),))


def test_a_strict_delete_forgets_the_adds_bytes_and_encodes_as_before() -> None:
    cache = FlowModCache(COOKIE)
    flow = _flow(1)
    cache.encode(flow, codec.ADD)
    assert len(cache) == 1
    data = cache.encode(flow, codec.DELETE_STRICT)
    assert data == FastEncoder().encode(flow, codec.DELETE_STRICT, COOKIE)
    assert len(cache) == 0
    assert cache.encode(flow, codec.ADD) == FastEncoder().encode(flow, codec.ADD, COOKIE)


def test_a_modify_keeps_the_adds_bytes() -> None:
    cache = FlowModCache(COOKIE)
    flow = _flow(1)
    cache.encode(flow, codec.ADD)
    cache.encode(flow, codec.MODIFY_STRICT)
    assert len(cache) == 1


def test_the_encoder_is_renewed_once_generations_were_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(flowmod_cache, "RENEW_ENCODER_GENERATIONS", 2)  # of 5000 at least
    cache = FlowModCache(COOKIE)
    encoder = cache.encoder
    for generation in range(2):
        flows = [_flow(n, port=generation + 1) for n in range(5_000)]
        for flow in flows:
            cache.encode(flow, codec.ADD)
        for flow in flows[: -1 if generation else None]:
            cache.encode(flow, codec.DELETE_STRICT)
    cache.forget(_flow(99_999))  # never cached: not counted
    assert cache.encoder is encoder and len(cache) == 1
    cache.forget(_flow(4_999, port=2))  # the 10 000th forgotten
    assert cache.encoder is not encoder and len(cache) == 0
    new = _flow(7, port=3)
    assert cache.encode(new, codec.ADD) == FastEncoder().encode(new, codec.ADD, COOKIE)
