"""Split the unframed OVSDB byte stream into JSON messages.

RFC 7047 puts JSON texts back to back with no framing. Bytes are decoded as UTF-8 incrementally
(a multi-byte character may straddle two reads) and complete values are parsed with the C JSON
decoder. A parse error that leaves only a cut-short token (``tru``, ``1.``, a ``\\u`` escape,
nothing) is a message still on its way; any other is garbage. To stay linear on large messages,
a buffer over 64 KiB is parsed only when new data ends a value (``}``/``]``) or the buffer has
doubled (and reached 1 MiB): the server writes whole messages, so each one's last chunk ends with
its closing brace. Small buffers are always tried, so short garbage is caught at once.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

from aovs.ovsdb.errors import ProtocolError

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_CHEAP_PARSE = 64 * 1024  # a failed parse of this little costs nothing worth saving
_MIN_RETRY = 1 << 20  # above _CHEAP_PARSE, wait for a chunk ending in a brace or this much data
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# what may follow a parse error when the text was merely cut short: a number or literal's start
_CUT_TOKEN = re.compile(r"[-+0-9.eE]*|t(r(ue?)?)?|f(a(l(se?)?)?)?|n(u(ll?)?)?")


class JsonStream:
    """Feed bytes, get whole JSON values. Raises :class:`ProtocolError` on garbage."""

    def __init__(self, max_message: int = MAX_MESSAGE_BYTES) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._decoder = json.JSONDecoder()
        self._buffer = ""
        self._retry_at = _MIN_RETRY  # parse a chunk not ending in a brace once this much is held
        self._offset = 0  # stream offset of the buffer's start, for error messages
        self._max = max_message

    @property
    def pending(self) -> int:
        """Characters of an incomplete message held back."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Any]:
        try:
            text = self._utf8.decode(data)
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"invalid UTF-8 near stream offset {self._offset}: {exc}") from None
        if not text:
            return []
        self._buffer += text
        if len(self._buffer) > self._max:
            raise ProtocolError(f"message larger than {self._max} characters")
        held = len(self._buffer)
        if _CHEAP_PARSE < held < self._retry_at and not text.rstrip().endswith(("}", "]")):
            return []
        return self._parse()

    def _parse(self) -> list[Any]:
        buffer = self._buffer
        end = len(buffer)
        messages: list[Any] = []
        pos = _WHITESPACE.match(buffer, 0).end()  # type: ignore[union-attr]
        while pos < end:
            try:
                message, pos = self._decoder.raw_decode(buffer, pos)
            except json.JSONDecodeError as exc:
                if _cut_short(exc, buffer):
                    break
                near = buffer[exc.pos : exc.pos + 40]
                raise ProtocolError(
                    f"malformed JSON at stream offset {self._offset + exc.pos}: {exc.msg}: {near!r}"
                ) from None
            messages.append(message)
            pos = _WHITESPACE.match(buffer, pos).end()  # type: ignore[union-attr]
        self._offset += pos
        self._buffer = buffer[pos:]
        self._retry_at = max(2 * len(self._buffer), _MIN_RETRY)
        return messages


def _cut_short(error: json.JSONDecodeError, buffer: str) -> bool:
    """True if ``error`` only says the text ends early (more bytes may complete it)."""
    rest = buffer[error.pos :]
    if error.msg.startswith("Unterminated string"):
        return True
    if error.msg.startswith("Invalid \\uXXXX escape"):  # e.g. ``"\u00`` then the end
        return '"' not in rest
    return _CUT_TOKEN.fullmatch(rest) is not None
