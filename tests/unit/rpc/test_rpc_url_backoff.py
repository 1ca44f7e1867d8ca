from __future__ import annotations

import pytest

from aovs.rpc.backoff import BackingOffTimeouts
from aovs.rpc.errors import TransportUrlError
from aovs.rpc.url import BrokerAddress, parse_transport_url


def test_single_broker_with_vhost() -> None:
    (broker,) = parse_transport_url("rabbit://u:p%40ss@10.0.0.1:5673/my-vhost")
    assert broker == BrokerAddress("10.0.0.1", 5673, "u", "p@ss", "my-vhost")
    assert "p@ss" not in str(broker)


def test_cluster_is_tried_in_order_and_shares_the_vhost() -> None:
    brokers = parse_transport_url("rabbit://a:1@h1:5672,b:2@h2,c:3@[::1]:5674/v")
    assert [(b.host, b.port, b.username, b.virtual_host) for b in brokers] == [
        ("h1", 5672, "a", "v"),
        ("h2", 5672, "b", "v"),
        ("::1", 5674, "c", "v"),
    ]


def test_empty_path_is_the_root_vhost() -> None:
    assert parse_transport_url("rabbit://guest:guest@127.0.0.1:5672/")[0].virtual_host == "/"
    assert parse_transport_url("rabbit://h")[0].virtual_host == "/"


@pytest.mark.parametrize("url", ["http://h/", "rabbit:///v", "rabbit://u:p@h:notaport/"])
def test_bad_urls_fail_clearly_without_the_password(url: str) -> None:
    with pytest.raises(TransportUrlError) as info:
        parse_transport_url(url)
    assert ":p@" not in str(info.value)


def test_backoff_doubles_per_method_up_to_the_cap_with_jitter() -> None:
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return high / 2

    timeouts = BackingOffTimeouts(default=10, maximum=35, uniform=uniform)
    assert timeouts.timeout_for("a") == 10
    assert timeouts.on_timeout("a") == 5
    assert timeouts.timeout_for("a") == 20
    timeouts.on_timeout("a")
    assert timeouts.timeout_for("a") == 35
    timeouts.on_timeout("a")
    assert timeouts.timeout_for("a") == 35
    assert timeouts.timeout_for("b") == 10  # per method
    assert draws == [(0.0, 10), (0.0, 10), (0.0, 10)]  # wait bounded by the default timeout


def test_backoff_rejects_a_cap_below_the_default() -> None:
    with pytest.raises(ValueError):
        BackingOffTimeouts(default=10, maximum=5)
