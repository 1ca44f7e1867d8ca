"""Log setup: one line per event, greppable ``key=value`` text or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    """``2026-11-21T13:00:00.123Z INFO aovs.agent port wired iface_id=.. ofport=5 ms=3.1``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        extra = " ".join(
            f"{key}={_kv(value)}" for key, value in vars(record).items() if key not in _STANDARD
        )
        head = f"{stamp}.{int(record.msecs):03d}Z {record.levelname} {record.name}"
        line = f"{head} {record.getMessage()}"
        if extra:
            line = f"{line} {extra}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def _kv(value: object) -> str:
    """A value that never splits the line or the key=value pairs: floats keep what matters
    (3 significant digits below 1 s, milliseconds above), odd strings are JSON-quoted."""
    text = _float(value) if isinstance(value, float) else str(value)
    if not text or any(c in _QUOTE_IF for c in text) or not text.isprintable():
        return json.dumps(text)
    return text


_QUOTE_IF = frozenset(' "=')


def _float(value: float) -> str:
    if abs(value) < 1:
        return f"{value:.3g}"
    return f"{value:.3f}".rstrip("0").rstrip(".")


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aio_pika", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # aiormq logs a broker-forced close as a WARNING with a traceback; aovs.rpc already says it
    # in one line ("broker connection lost; reconnecting"), so only aiormq's errors get through.
    logging.getLogger("aiormq").setLevel(max(logging.ERROR, root.level))
