"""The struct flow-stats decoder equals os-ken + ``codec.decode_flow_stats``, entry for entry."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import pytest
from flow_strategies import flows
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_v1_3 as ofp

from aovs.openflow import codec
from aovs.openflow.errors import ProtocolError
from aovs.openflow.fast_encoder import FLOW_MOD_HEAD, FastEncoder
from aovs.openflow.flow_stats import FlowStatsDecoder, Undecoded
from aovs.openflow.flows import (
    CT,
    Conjunction,
    Flow,
    GotoTable,
    Match,
    Output,
    RegLoad,
    SetField,
    ct_state,
)
from aovs.openflow.messages import HEADER, parse

COOKIE = 0xA0B5_0000_0000_0001
ENCODER = FastEncoder()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FLOW_MOD_FIXED = FLOW_MOD_HEAD.size  # ofp_header + ofp_flow_mod up to the match
STATS_HEAD = struct.Struct("!HBxIIHHHH4xQQQ")
MP_HEAD = struct.Struct("!HH4x")

addresses = st.one_of(
    st.builds(
        lambda a: SetField("ipv4_dst", ".".join(str(b) for b in a)),
        st.binary(min_size=4, max_size=4),
    ),
    st.builds(
        lambda a: SetField(
            "ipv6_src", ":".join(a[i : i + 2].hex().upper() for i in range(0, 16, 2))
        ),
        st.binary(min_size=16, max_size=16),
    ),
    st.builds(lambda a: SetField("eth_src", a.hex(":").upper()), st.binary(min_size=6, max_size=6)),
)


def stats_entry(
    flow: Flow, cookie: int, counters: tuple[int, int, int, int] = (1, 2, 3, 4)
) -> bytes:
    """What OVS sends for an installed flow: the FlowMod's match and instructions behind an
    ofp_flow_stats header (durations and counters are noise the decoder must ignore)."""
    mod = ENCODER.encode(flow, codec.ADD, cookie)
    body = mod[FLOW_MOD_FIXED:]
    sec, nsec, packets, nbytes = counters
    head = STATS_HEAD.pack(
        STATS_HEAD.size + len(body), flow.table, sec, nsec, flow.priority,
        flow.idle_timeout, flow.hard_timeout, 0, flow.cookie or cookie, packets, nbytes,
    )  # fmt: skip
    return head + body


def reply(entries: list[bytes], more: bool = False) -> bytes:
    body = MP_HEAD.pack(ofp.OFPMP_FLOW, ofp.OFPMPF_REPLY_MORE if more else 0) + b"".join(entries)
    return HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, 8 + len(body), 7) + body


def osken_decoded(message: bytes, cookie: int) -> list[Any]:
    """The reference: os-ken parses the reply, codec decodes each entry (or refuses it)."""
    result: list[Any] = []
    for stats in parse(message).body:
        try:
            result.append(codec.decode_flow_stats(stats, cookie))
        except (codec.UnsupportedFlowError, ValueError) as exc:
            result.append(type(exc))
    return result


def fast_decoded(decoder: FlowStatsDecoder, message: bytes) -> list[Any]:
    return [
        type(item.error) if isinstance(item, Undecoded) else item
        for item in decoder.decode_reply(message)
    ]


@SETTINGS
@given(st.lists(flows(), min_size=1, max_size=8), st.integers(0, 2**64 - 1))
def test_random_flows_decode_like_osken(batch: list[Flow], foreign: int) -> None:
    decoder = FlowStatsDecoder(COOKIE)
    entries = [stats_entry(f, COOKIE) for f in batch]
    entries.append(stats_entry(batch[0].replace(cookie=foreign or 1), COOKIE))
    message = reply(entries)
    expected = osken_decoded(message, COOKIE)
    assert fast_decoded(decoder, message) == expected
    assert fast_decoded(decoder, message) == expected  # again, from the caches
    assert decoder.fallbacks == 0  # every shape aovs generates takes the struct path


@SETTINGS
@given(st.lists(addresses, min_size=1, max_size=3))
def test_set_field_addresses_equal_what_the_pipeline_built(actions: list[SetField]) -> None:
    flow = Flow(0, 1, Match(in_port=1), actions)
    message = reply([stats_entry(flow, COOKIE)])
    (decoded,) = FlowStatsDecoder(COOKIE).decode_reply(message)
    assert decoded == flow  # SetField normalises like Match: upper-case/long forms compare equal
    assert [decoded] == osken_decoded(message, COOKIE)


def test_ovs_style_flows_decode_back_to_the_desired_values() -> None:
    desired = [
        Flow(71, 65, Match(reg5=3, eth_type=0x800, ct_state=ct_state("-trk")),
             [CT(zone_src="reg6", table=72)]),
        Flow(72, 71, Match(conj_id=9, eth_type=0x800),
             [RegLoad("reg7", 9), CT(commit=True, zone_src="reg6",
                                     actions=(SetField("ct_mark", 1),)), Output(3, 0)]),
        Flow(72, 70, Match(reg5=3, ipv4_dst=("10.1.2.3", "255.255.255.0")),
             [Conjunction(9, 1, 2)]),
        Flow(0, 9, Match(in_port=3, eth_src="FA:16:3E:00:00:01"), [GotoTable(60)]),
    ]  # fmt: skip
    decoded = FlowStatsDecoder(COOKIE).decode_reply(
        reply([stats_entry(f, COOKIE) for f in desired])
    )
    assert decoded == desired


def raw_entry(tlvs: bytes, instructions: bytes = b"", cookie: int = COOKIE) -> bytes:
    """A flow-stats entry with a hand-made match (OXM TLVs) and instruction bytes."""
    match = struct.pack("!HH", ofp.OFPMT_OXM, 4 + len(tlvs)) + tlvs
    match += bytes(-len(match) % 8)
    length = STATS_HEAD.size + len(match) + len(instructions)
    head = STATS_HEAD.pack(length, 3, 0, 0, 5, 0, 0, 0, cookie, 0, 0)
    return head + match + instructions


IN_PORT_1 = bytes.fromhex("80000004 00000001")
OUTPUT_2 = struct.pack("!HH4x", ofp.OFPIT_APPLY_ACTIONS, 24) + struct.pack(
    "!HHIH6x", ofp.OFPAT_OUTPUT, 16, 2, 0
)


def test_what_the_struct_path_skips_goes_through_osken_for_that_entry() -> None:
    write_actions = struct.pack("!HH4x", ofp.OFPIT_WRITE_ACTIONS, 8)
    message = reply(
        [raw_entry(IN_PORT_1, OUTPUT_2), raw_entry(IN_PORT_1, write_actions), raw_entry(b"")]
    )
    decoder = FlowStatsDecoder(COOKIE)
    items = decoder.decode_reply(message)
    assert items[0] == Flow(3, 5, Match(in_port=1), [Output(2, 0)])
    assert isinstance(items[1], Undecoded)  # os-ken parses it, the Flow value cannot hold it
    assert items[2] == Flow(3, 5, Match())
    assert decoder.fallbacks == 1
    assert fast_decoded(FlowStatsDecoder(COOKIE), message) == osken_decoded(message, COOKIE)


def test_a_masked_set_field_fails_like_osken_parsing_fails() -> None:
    set_reg0_masked = bytes.fromhex("0019 0010 00010108 00000001 00000001")
    inst = struct.pack("!HH4x", ofp.OFPIT_APPLY_ACTIONS, 8 + len(set_reg0_masked))
    message = reply([raw_entry(IN_PORT_1, inst + set_reg0_masked)])
    with pytest.raises(ProtocolError):
        parse(message)
    with pytest.raises(ProtocolError):
        FlowStatsDecoder(COOKIE).decode_reply(message)


@pytest.mark.parametrize(
    "tlv",
    [
        *(
            bytes.fromhex("80001708 0a010203") + bytes.fromhex(mask)  # ipv4_src/mask
            for mask in ("ff00ff00", "000000ff", "00000000", "ffffffff", "ffff0000")
        ),
        bytes.fromhex("8000090c fa163e000001 ffffff000000"),  # eth_src/mask
        bytes.fromhex("8000090c fa163e000001 ffffffffffff"),
        bytes.fromhex("80003520") + bytes(range(16)) + bytes.fromhex("ffff" * 4 + "00" * 8),
        bytes.fromhex("80000108 00000015 0000000f"),  # in_port/mask, bits outside the mask
        bytes.fromhex("0001d308 000000e2 0000003f"),  # ct_state/mask
        bytes.fromhex("00010b08 00000005 ffffffff"),  # reg5 with an all-ones mask
        bytes.fromhex("ffff5406 4f4e4600 0012"),  # tcp_flags: an ONF experimenter OXM
        bytes.fromhex("ffff5508 4f4e4600 0012 0fff"),
    ],
    ids=lambda tlv: tlv[:4].hex(),
)
def test_odd_match_fields_are_read_like_osken_and_match_read_them(tlv: bytes) -> None:
    """Masks that are no prefix (ipaddress reads some as host masks), full masks, experimenter
    OXMs: whatever os-ken + Match make of them, the decoder makes too (or it refuses both)."""
    message = reply([raw_entry(tlv, OUTPUT_2)])
    assert fast_decoded(FlowStatsDecoder(COOKIE), message) == osken_decoded(message, COOKIE)


def test_a_truncated_entry_is_a_protocol_error() -> None:
    entry = stats_entry(Flow(0, 1, Match(in_port=1), [Output(2)]), COOKIE)
    with pytest.raises(ProtocolError):
        FlowStatsDecoder(COOKIE).decode_reply(reply([entry[:-8]]))
    bad_length = bytearray(entry)
    struct.pack_into("!H", bad_length, 0, 8)
    with pytest.raises(ProtocolError):
        FlowStatsDecoder(COOKIE).decode_reply(reply([bytes(bad_length)]))


hextets = st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xFE80, 0x0A01]) | st.integers(0, 0xFFFF)


@SETTINGS
@given(st.lists(hextets, min_size=8, max_size=8))
@example([0, 0, 0, 0, 0, 0xFFFF, 0x0102, 0x0304])  # ::ffff:1.2.3.4 to inet_ntop
@example([0, 0, 0, 0, 0, 0, 0x0102, 0x0304])  # ::1.2.3.4 to inet_ntop
@example([1, 0, 0, 1, 0, 0, 1, 0])  # two equal zero runs: the first is compressed
def test_ipv6_addresses_are_written_like_ipaddress_writes_them(words: list[int]) -> None:
    """Zero runs, ties between runs, embedded-IPv4 shapes (::ffff:a.b.c.d): inet_ntop's text
    must be the text Match stores."""
    address = struct.pack("!8H", *words)
    message = reply([raw_entry(bytes.fromhex("80003410") + address, OUTPUT_2)])
    (decoded,) = FlowStatsDecoder(COOKIE).decode_reply(message)
    assert isinstance(decoded, Flow)
    assert decoded == osken_decoded(message, COOKIE)[0]
    assert decoded.match.get("ipv6_src") == str(ipaddress.IPv6Address(address))
