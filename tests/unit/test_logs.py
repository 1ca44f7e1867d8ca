"""Log lines: one event per line, greppable key=value text or JSON, extra fields included."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest

from aovs.logs import JsonFormatter, KeyValueFormatter, configure_logging


def _record(msg: str = "port wired", exc: bool = False, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord(
        {"name": "aovs.agent", "levelname": "INFO", "levelno": logging.INFO, "msg": msg,
         "created": 1_700_000_000.25, "msecs": 250.0, **extra}
    )  # fmt: skip
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            record.exc_info = sys.exc_info()
    return record


def test_key_value_line() -> None:
    line = KeyValueFormatter().format(_record(iface_id="5f0c-aa", ofport=5, bridge="br-int"))
    stamp = "2023-11-14T22:13:20.250Z"
    assert line == f"{stamp} INFO aovs.agent port wired iface_id=5f0c-aa ofport=5 bridge=br-int"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0042, "0.0042"),  # a latency in seconds keeps its significant digits
        (3.14159, "3.142"),
        (1_700_000_000.123456, "1700000000.123"),  # a timestamp keeps its milliseconds
        (2.0, "2"),
        (0.0, "0"),
        ("two words", '"two words"'),
        ("", '""'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("line\nbreak", '"line\\nbreak"'),  # one event stays one line
        (None, "None"),
        (True, "True"),
    ],
)
def test_key_value_values(value: object, text: str) -> None:
    assert KeyValueFormatter().format(_record(v=value)).endswith(f" v={text}")


def test_key_value_exception_follows_the_line() -> None:
    text = KeyValueFormatter().format(_record("bundle failed", exc=True, bridge="br-int"))
    first, *rest = text.splitlines()
    assert first.endswith("bundle failed bridge=br-int")
    assert rest[-1] == "RuntimeError: boom"


def test_json_line() -> None:
    line = JsonFormatter().format(_record(iface_id="5f0c-aa", seconds=0.0042, path=None))
    assert "\n" not in line
    assert json.loads(line) == {
        "ts": 1_700_000_000.25, "level": "INFO", "logger": "aovs.agent", "msg": "port wired",
        "iface_id": "5f0c-aa", "seconds": 0.0042, "path": None,
    }  # fmt: skip


def test_json_line_with_exception_and_odd_values() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    line = JsonFormatter().format(_record("failed", exc=True, thing=Odd()))
    data = json.loads(line)
    assert data["thing"] == "odd"
    assert data["exc"].endswith("RuntimeError: boom")
    assert "\n" not in line


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    ("fmt", "formatter"), [("json", JsonFormatter), ("text", KeyValueFormatter)]
)
def test_configure_logging_picks_the_format(
    restore_root: None, fmt: str, formatter: type[logging.Formatter]
) -> None:
    configure_logging("DEBUG", fmt)
    root = logging.getLogger()
    assert len(root.handlers) == 1
    assert isinstance(root.handlers[0].formatter, formatter)
    assert root.level == logging.DEBUG
    assert logging.getLogger("aio_pika").level == logging.WARNING


def test_broker_close_is_not_a_traceback(
    restore_root: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """aiormq reports a broker-forced close as a WARNING with a traceback: aovs.rpc already
    logs it in one line, so only aiormq's errors pass."""
    configure_logging("INFO", "text")
    logging.getLogger("aiormq.connection").warning("Cancelling cause reader exited abnormally")
    logging.getLogger("aiormq.connection").error("unexpected frame")
    err = capsys.readouterr().err
    assert "Cancelling" not in err
    assert "unexpected frame" in err
