"""``[oslo_messaging_rabbit]`` and ``transport_url``: the same values, overrides and queue
declarations as the real oslo.messaging 18 (its option declarations, its URL parser, its
``ConfigOptsProxy`` and its driver's consumer and publisher objects), and no password anywhere."""

from __future__ import annotations

import itertools
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from oslo_config import cfg
from oslo_messaging import TransportURL
from oslo_messaging._drivers import amqp as oslo_amqp
from oslo_messaging._drivers import common as oslo_common
from oslo_messaging._drivers import impl_rabbit

from aovs.config import AgentConfig, ConfigError, IniFiles, load_config, read_config
from aovs.rpc.errors import TransportUrlError
from aovs.rpc.options import (
    OSLO_RABBIT_OPTIONS,
    RabbitOptions,
    control_exchange,
    fanout_exchange,
    ignored_query,
    topic_queue,
    transient_queue,
)
from aovs.rpc.url import parse_transport, redact

GROUP = "oslo_messaging_rabbit"


def oslo_conf(argv: list[str]) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_opts(impl_rabbit.rabbit_opts, group=GROUP)
    conf.register_opts(oslo_amqp.amqp_opts, group=GROUP)
    conf(args=argv, project="neutron", default_config_files=[], default_config_dirs=[],
         use_env=False)  # fmt: skip
    return conf


def oslo_values(conf: cfg.ConfigOpts, url: str) -> dict[str, Any]:
    """What oslo.messaging's rabbit driver reads: the group, with the URL's query over it."""
    proxy = oslo_common.ConfigOptsProxy(conf, TransportURL.parse(conf, url), GROUP)
    group = proxy.oslo_messaging_rabbit
    values = {name: group[name] for name in RabbitOptions.model_fields}
    values["ssl_version"] = values["ssl_version"].lower()
    return values


def test_the_defaults_are_oslo_messagings() -> None:
    conf = oslo_conf([])
    assert RabbitOptions().model_dump() == oslo_values(conf, "rabbit://h/")
    assert set(RabbitOptions.model_fields) <= OSLO_RABBIT_OPTIONS
    declared = {o.name for o in impl_rabbit.rabbit_opts + oslo_amqp.amqp_opts}
    deprecated = {d.name for o in impl_rabbit.rabbit_opts for d in o.deprecated_opts}
    assert declared | deprecated == OSLO_RABBIT_OPTIONS


FILE = """[DEFAULT]
transport_url = {url}
[oslo_messaging_rabbit]
ssl = {ssl}
ssl_ca_file = {ca}
ssl_version = TLSv1_2
heartbeat_timeout_threshold = 30
heartbeat_rate = 2
kombu_reconnect_delay = 0.5
kombu_failover_strategy = shuffle
rabbit_retry_interval = 2
rabbit_retry_backoff = 0
amqp_durable_queues = yes
rabbit_transient_queues_ttl = 600
rpc_conn_pool_size = 10
"""

URLS = [
    "rabbit://u:p@h1:5672,u:p@h2:5672/",
    "rabbit://u:p@h1:5672/v?ssl=1&heartbeat_timeout_threshold=10",
    "rabbit://u:p@h1,u:p@h2/v?amqp_durable_queues=false&rabbit_quorum_queue=true"
    "&rabbit_retry_backoff=3",
    "rabbit://u:p@h1/?kombu_reconnect_delay=2.5&ssl=off&rabbit_transient_quorum_queue=On",
]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("ssl", ["false", "true"])
def test_same_values_as_oslo_messaging_with_the_query_over_the_section(
    tmp_path: Path, url: str, ssl: str
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read by the option check, only tested for existence\n")
    path = tmp_path / "neutron.conf"
    path.write_text(FILE.format(url=url, ssl=ssl, ca=ca))
    expected = oslo_values(oslo_conf(["--config-file", str(path)]), url)
    loaded = read_config(IniFiles.of(path))
    config = loaded.config
    effective = config.oslo_messaging_rabbit.with_query(parse_transport(config.transport_url).query)
    assert effective.model_dump() == expected
    assert "[oslo_messaging_rabbit] rpc_conn_pool_size" in loaded.ignored
    assert not loaded.hinted  # an oslo option aovs does not implement is no mistake


def test_the_scenarios_change_values() -> None:
    """The comparison above is not vacuous: the section and the queries change the values."""
    seen = {
        url: RabbitOptions(amqp_durable_queues=True).with_query(parse_transport(url).query)
        for url in URLS
    }
    assert seen[URLS[1]].ssl and seen[URLS[1]].heartbeat_timeout_threshold == 10
    assert seen[URLS[2]].rabbit_quorum_queue and not seen[URLS[2]].amqp_durable_queues
    assert seen[URLS[2]].durable  # quorum queues are durable
    assert (
        seen[URLS[3]].rabbit_transient_quorum_queue and seen[URLS[3]].kombu_reconnect_delay == 2.5
    )


# -- the declarations ------------------------------------------------------------------------


class _Captured:
    def __init__(self) -> None:
        self.consumers: list[Any] = []
        self.exchanges: list[Any] = []


def _oslo_connection(options: RabbitOptions) -> tuple[Any, _Captured]:
    """oslo's Connection with the given options, without connecting: its declare_* methods
    build the Consumer objects, its *_send methods the Exchange objects; we capture both."""
    conn = impl_rabbit.Connection.__new__(impl_rabbit.Connection)
    captured = _Captured()
    conn.amqp_durable_queues = options.amqp_durable_queues
    conn.amqp_auto_delete = options.amqp_auto_delete
    conn.rabbit_ha_queues = options.rabbit_ha_queues
    conn.rabbit_quorum_queue = options.rabbit_quorum_queue
    conn.rabbit_transient_quorum_queue = options.rabbit_transient_quorum_queue
    conn.rabbit_quorum_queue_config = impl_rabbit.QuorumMemConfig(
        options.rabbit_quorum_delivery_limit,
        options.rabbit_quorum_max_memory_length,
        options.rabbit_quorum_max_memory_bytes,
    )
    conn.rabbit_transient_queues_ttl = options.rabbit_transient_queues_ttl
    conn.rabbit_stream_fanout = False
    conn.enable_cancel_on_failover = False
    conn.direct_mandatory_flag = True
    conn._q_manager = None
    conn.declare_consumer = captured.consumers.append
    conn._ensure_publishing = lambda method, exchange, *a, **k: captured.exchanges.append(exchange)
    return conn, captured


COMBINATIONS = [
    RabbitOptions(
        amqp_durable_queues=durable,
        amqp_auto_delete=auto_delete,
        rabbit_quorum_queue=quorum,
        rabbit_transient_quorum_queue=transient,
        rabbit_ha_queues=ha and not (quorum or transient),
        rabbit_transient_queues_ttl=ttl,
        rabbit_quorum_delivery_limit=3 if quorum else 0,
        rabbit_quorum_max_memory_bytes=1024 if transient else 0,
    )
    for durable, auto_delete, quorum, transient, ha, ttl in itertools.product(
        [False, True], [False, True], [False, True], [False, True], [False, True], [0, 60]
    )
]


@pytest.mark.parametrize("options", COMBINATIONS)
def test_queues_and_exchanges_are_declared_as_oslo_declares_them(options: RabbitOptions) -> None:
    conn, captured = _oslo_connection(options)
    conn.declare_topic_consumer("neutron", "q-agent-notifier-port-update")
    conn.declare_fanout_consumer("q-agent-notifier-port-update", None)
    conn.declare_direct_consumer("reply_abc", None)
    conn.topic_send("neutron", "q-plugin", {})
    conn.fanout_send("q-agent-notifier-port-update", {})
    topic, fanout, reply = captured.consumers
    topic_send, fanout_send = captured.exchanges

    def queue(consumer: Any) -> tuple[bool, bool, dict[str, Any]]:
        return consumer.durable, consumer.queue_auto_delete, consumer.queue_arguments

    spec = topic_queue(options)
    assert (spec.durable, spec.auto_delete, dict(spec.arguments)) == queue(topic)
    spec = transient_queue(options)
    assert (spec.durable, spec.auto_delete, dict(spec.arguments)) == queue(fanout) == queue(reply)
    for exchange, ours in (
        (topic.exchange, control_exchange(options)),
        (topic_send, control_exchange(options)),
        (fanout.exchange, fanout_exchange(options)),
        (fanout_send, fanout_exchange(options)),
    ):
        assert (exchange.durable, exchange.auto_delete) == (ours.durable, ours.auto_delete)


# -- the query -------------------------------------------------------------------------------


def test_query_values_are_converted_as_oslo_does() -> None:
    base = RabbitOptions()
    url = parse_transport("rabbit://h/?ssl=YES&heartbeat_timeout_threshold=7&ssl_version=TLSv1_3")
    options = base.with_query(url.query)
    assert options.ssl and options.heartbeat_timeout_threshold == 7
    assert options.ssl_version == "tlsv1_3"
    assert base.with_query({}) is base


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("heartbeat=10", "'heartbeat' is not an [oslo_messaging_rabbit] option (did you mean "
                         "heartbeat_timeout_threshold?)"),
        ("ssl=maybe", "ssl='maybe' is not a boolean"),
        ("heartbeat_rate=0", "[oslo_messaging_rabbit] heartbeat_rate: Input should be greater"),
        ("ssl_version=sslv3", "'sslv3' is not supported"),
        ("kombu_failover_strategy=random", "kombu_failover_strategy: Input should be"),
        ("rabbit_quorum_queue=1&rabbit_ha_queues=1", "cannot be combined with rabbit_ha_queues"),
        ("rabbit_transient_quorum_queue=1&rabbit_ha_queues=1", "cannot be combined with rabbit"),
    ],
)  # fmt: skip
def test_bad_query_values_fail_clearly(query: str, message: str) -> None:
    url = parse_transport(f"rabbit://user:s3cret@h/?{query}")
    with pytest.raises(TransportUrlError) as info:
        RabbitOptions().with_query(url.query)
    assert message in str(info.value)
    assert "s3cret" not in str(info.value)


def test_oslo_options_aovs_does_not_implement_are_ignored_not_fatal() -> None:
    query = parse_transport("rabbit://h/?rabbit_qos_prefetch_count=5&ssl=0&hostname=x").query
    assert RabbitOptions().with_query(query) == RabbitOptions()
    assert ignored_query(query) == ("hostname", "rabbit_qos_prefetch_count")


def test_tls_files_must_exist_when_tls_is_on(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    RabbitOptions(ssl=False, ssl_ca_file=str(missing))  # not used: not checked
    with pytest.raises(ValueError, match=r"(?s)ssl_ca_file.*no such file"):
        RabbitOptions(ssl=True, ssl_ca_file=str(missing))
    key = tmp_path / "key.pem"
    key.write_text("")
    with pytest.raises(ValueError, match=r"(?s)ssl_cert_file.*must be set when ssl_key_file is"):
        RabbitOptions(ssl=True, ssl_key_file=str(key))


def test_config_errors_name_the_file_and_option(tmp_path: Path) -> None:
    path = tmp_path / "neutron.conf"
    path.write_text(
        "[DEFAULT]\ntransport_url = rabbit://u:s3cret@h/\n"
        f"[oslo_messaging_rabbit]\nssl = true\nssl_ca_file = {tmp_path / 'missing.pem'}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(IniFiles.of(path))
    assert str(info.value) == (
        f"config file {path}: [oslo_messaging_rabbit] ssl_ca_file: "
        f"{tmp_path / 'missing.pem'}: no such file"
    )
    path.write_text("[DEFAULT]\ntransport_url = rabbit://u:s3cret@h/?heartbeat=5\n")
    with pytest.raises(ConfigError) as info:
        load_config(IniFiles.of(path))
    assert str(info.value).startswith(f"config file {path}: [DEFAULT] transport_url: ")
    assert "s3cret" not in str(info.value)


def test_toml_and_environment_set_the_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert AgentConfig().oslo_messaging_rabbit == RabbitOptions()
    path = tmp_path / "aovs.toml"
    path.write_text("[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = 15\n")
    monkeypatch.setenv("AOVS_OSLO_MESSAGING_RABBIT__RABBIT_QUORUM_QUEUE", "true")
    config = load_config(path)
    assert config.oslo_messaging_rabbit.heartbeat_timeout_threshold == 15
    assert config.oslo_messaging_rabbit.rabbit_quorum_queue


# -- URLs and passwords ----------------------------------------------------------------------


def test_url_with_hosts_vhost_and_query() -> None:
    url = parse_transport("rabbit://a:p%2Fw@h1:5671,b:q@[::1]:5673/my%2Fvhost?ssl=1&ssl=0")
    assert [(b.host, b.port, b.username, b.password) for b in url.brokers] == [
        ("h1", 5671, "a", "p/w"),
        ("::1", 5673, "b", "q"),
    ]
    assert url.virtual_host == "my/vhost"
    assert dict(url.query) == {"ssl": "1,0"}  # oslo joins repeated values
    assert parse_transport("rabbit://h1,h2/?ssl=1").brokers[1].username == "guest"
    assert parse_transport("rabbit://u:p@h?ssl=1").query["ssl"] == "1"  # no path, a query


def test_the_same_brokers_as_oslo_messaging() -> None:
    for text in ["rabbit://u:p$a:ss@h1:5672,v:w@h2/vh", "rabbit://h1:5673,h2/", "rabbit://u:p@h"]:
        oslo = TransportURL.parse(cfg.ConfigOpts(), text)
        ours = parse_transport(text)
        assert [(b.hostname, b.port or 5672) for b in oslo.hosts] == [
            (b.host, b.port) for b in ours.brokers
        ]
        assert [b.password or "guest" for b in oslo.hosts] == [b.password for b in ours.brokers]
        assert (oslo.virtual_host or "/") == ours.virtual_host


# a marker prefix: the password cannot occur by chance in the rest of a message
PASSWORDS = st.text(string.ascii_letters + string.digits + "!$%&'()*+;=:@-._~").map(
    lambda text: f"Zq9{text}"
)


@given(password=PASSWORDS, other=PASSWORDS)
def test_no_password_in_any_message(password: str, other: str) -> None:
    url = f"rabbit://alice:{password}@h1:5672,bob:{other}@h2:notaport/v?ssl=1"
    with pytest.raises(TransportUrlError) as info:
        parse_transport(url)
    assert password not in str(info.value) and other not in str(info.value)
    good = parse_transport(url.replace("notaport", "5673"))
    assert password not in str(good) and password not in repr(good.brokers[0])
    shown = redact(url)
    assert password not in shown and other not in shown and shown.endswith("/v?ssl=1")


def test_the_agent_gives_its_transport_the_section(tmp_path: Path) -> None:
    """[oslo_messaging_rabbit] reaches the agent's transport (with the URL's query over it)."""
    from aovs.agent.agent import Agent

    config = AgentConfig(
        transport_url="rabbit://u:p@h1,u:p@h2/?heartbeat_rate=4",
        agent={"state_path": str(tmp_path)},
        oslo_messaging_rabbit=RabbitOptions(heartbeat_timeout_threshold=17),
    )
    options = Agent(config).transport.options
    assert options.heartbeat_timeout_threshold == 17, (
        "Agent._new_transport does not pass config.oslo_messaging_rabbit to its transport"
    )
    assert options.heartbeat_rate == 4
