"""The stream decoder: any chunking of a valid stream yields the same messages; garbage raises."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aovs.ovsdb.errors import ProtocolError
from aovs.ovsdb.stream import JsonStream

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),  # any code point: multi-byte UTF-8, escapes, braces inside strings
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)  # fmt: skip
messages = st.fixed_dictionaries(
    {
        "id": st.one_of(st.none(), st.integers(0, 2**31)),
        "method": st.text(max_size=8),
        "params": json_values,
    }
)


@st.composite
def chunked_stream(draw: st.DrawFn) -> tuple[list[Any], list[bytes]]:
    sent = draw(st.lists(messages, min_size=1, max_size=6))
    separators = [draw(st.sampled_from(["", "", " ", "\n", "\r\n\t"])) for _ in sent]
    ascii_only = draw(st.booleans())
    data = "".join(
        sep + json.dumps(m, ensure_ascii=ascii_only)
        for m, sep in zip(sent, separators, strict=True)
    )
    raw = data.encode()
    cuts = sorted(draw(st.sets(st.integers(0, len(raw)), max_size=12)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    return sent, chunks


@settings(max_examples=300)
@given(chunked_stream())
def test_any_chunking_yields_every_message(case: tuple[list[Any], list[bytes]]) -> None:
    sent, chunks = case
    stream = JsonStream()
    received = [message for chunk in chunks for message in stream.feed(chunk)]
    assert received == sent
    assert stream.pending == 0


def test_multibyte_character_split_across_reads() -> None:
    raw = json.dumps({"id": 1, "result": "péché €"}, ensure_ascii=False).encode()
    cut = raw.index("€".encode()) + 1  # inside the three bytes of the euro sign
    stream = JsonStream()
    assert stream.feed(raw[:cut]) == []
    assert stream.feed(raw[cut:]) == [{"id": 1, "result": "péché €"}]


def test_several_messages_in_one_read() -> None:
    assert JsonStream().feed(b'{"a":1}{"b":2} {"c":3}\n') == [{"a": 1}, {"b": 2}, {"c": 3}]


@pytest.mark.parametrize(
    "garbage",
    [b'{"a":1}xyz{"b":2}', b"]]]]]]]]]]]]]]]]]]]]]]]]",
     b'{"id": 1, "result": nope, "more": "padding padding"}',
     b"\xff\xfe{}", b'{"a": 1,, "b": 2, "c": "xxxxxxxxxxxxxxxxxxxx"}'],
)  # fmt: skip
def test_garbage_raises_protocol_error(garbage: bytes) -> None:
    with pytest.raises(ProtocolError):
        JsonStream().feed(garbage)


def test_a_large_message_in_small_reads_is_parsed_once_complete() -> None:
    message = {"id": 1, "result": {f"row{i}": {"initial": {"name": f"p{i}"}} for i in range(2000)}}
    raw = json.dumps(message).encode()
    stream = JsonStream()
    out: list[Any] = []
    for start in range(0, len(raw), 1000):
        out.extend(stream.feed(raw[start : start + 1000]))
    assert out == [message]


def test_oversized_message_is_refused() -> None:
    stream = JsonStream(max_message=100)
    with pytest.raises(ProtocolError, match="larger than"):
        stream.feed(b'{"a": "' + b"x" * 200)
