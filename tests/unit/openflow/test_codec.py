"""The codec's two promises: the fast encoder is os-ken, and decode inverts encode."""

from __future__ import annotations

import pytest
from flow_strategies import flows
from hypothesis import HealthCheck, given, settings

from aovs.openflow import codec
from aovs.openflow.fast_encoder import FastEncoder
from aovs.openflow.flows import CT, Flow, Match, Output, RegLoad, SetField, ct_state, vid

COOKIE = 0xA0B5_0000_0000_0001
ENCODER = FastEncoder()
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(flows())
def test_fast_encoder_is_byte_identical_to_osken(flow: Flow) -> None:
    for command in (codec.ADD, codec.MODIFY_STRICT, codec.DELETE_STRICT):
        assert ENCODER.encode(flow, command, COOKIE) == codec.encode_flow_mod(flow, command, COOKIE)


@SETTINGS
@given(flows())
def test_decode_inverts_encode(flow: Flow) -> None:
    decoded = codec.decode_flow_mod(ENCODER.encode(flow, codec.ADD, COOKIE))
    assert decoded.replace(cookie=0 if decoded.cookie == COOKIE else decoded.cookie) == flow


def test_conjunction_clause_is_zero_based_on_the_wire() -> None:
    from aovs.openflow.flows import Conjunction

    action = codec.osken_action(Conjunction(id=7, clause=1, n_clauses=2))
    assert action.clause == 0
    assert codec.decode_action(action) == Conjunction(7, 1, 2)


def test_partial_reg_load_is_a_masked_load2() -> None:
    action = codec.osken_action(RegLoad("reg0", 1, ofs=3, n_bits=1))
    assert (action.dst, action.value, action.mask) == ("reg0", 8, 8)
    full = codec.osken_action(RegLoad("reg0", 5))
    assert full.mask is None


def test_unknown_action_is_a_clear_error() -> None:
    flow = Flow(0, 1, Match(), [SetField("no_such_field", 1)])
    with pytest.raises(codec.UnsupportedFlowError, match="no_such_field"):
        codec.encode_flow_mod(flow, codec.ADD, COOKIE)
    with pytest.raises(codec.UnsupportedFlowError):
        ENCODER.encode(flow, codec.ADD, COOKIE)


def test_bridge_cookie_is_stamped_and_decoded_back_to_zero() -> None:
    flow = Flow(
        71,
        65,
        Match(ct_state=ct_state("+trk+est"), vlan_vid=vid(4), reg5=3),
        [CT(commit=True, zone_src="reg6", actions=(SetField("ct_mark", 1),)), Output(3)],
    )
    data = ENCODER.encode(flow, codec.ADD, COOKIE)
    assert codec.decode_flow_mod(data).cookie == COOKIE
    own = codec.decode_flow_mod(data).replace(cookie=0)
    assert own == flow
