"""neutron-server RPC over RabbitMQ, speaking oslo.messaging's wire format exactly.

The only package that touches AMQP. A real neutron-server (or the simulator) is the peer.

Using it from the agent::

    transport = RpcTransport(cfg.transport_url)   # rabbit://u:p@h1:5672,u:p@h2:5672/vhost
    await transport.start()                       # connects; then reconnects forever by itself
    api = NeutronServerApi(transport, host=cfg.host,
                           rpc_response_timeout=cfg.agent.rpc_response_timeout,
                           rpc_response_max_timeout=cfg.agent.rpc_response_max_timeout,
                           device_list_batch_size=cfg.agent.rpc_resources_processing_step)

    details = await api.get_devices_details(ids)  # DevicesDetails, never raises for a device
    details.ports              # {id: model.PortDetails}
    details.unknown            # ids answered {"device": id} only (no such port / not bound)
    details.no_active_binding  # ids bound to another host: do not wire them
    details.failed             # {id: reason}: server failure, timeout, malformed details

    sg = await api.security_group_info_for_devices(ids)   # SecurityGroupInfo
    tunnels = await api.tunnel_sync(local_ip, "vxlan")    # tuple[model.TunnelEndpoint]

    await api.update_device_list(up=[...], down=[...])    # slow on a real server (~0.1 s a
    # port): the agent sends it off the critical path, see aovs.agent.reporter.DeviceReporter

    heartbeat = StateReporter(api, interval=cfg.agent.report_interval,
                              configurations=lambda: {...}, device_count=lambda: n,
                              on_revived=request_full_resync)
    heartbeat.start()

    consumer = NotificationConsumer(transport, host=cfg.host)
    await consumer.start()
    async for event in consumer:   # PortUpdate, PortDelete, NetworkUpdate, NetworkDelete,
        ...                        # SecurityGroupsRuleUpdated/MemberUpdated, TunnelUpdate/Delete,
                                   # AddFdbEntries, RemoveFdbEntries, UpdateFdbEntries

Errors: :class:`RpcTimeout` (no reply in time; the method's next timeout is doubled, capped at
rpc_response_max_timeout, after a jittered pause, as neutron-lib's BackingOffClient does),
:class:`RpcConnectionLost` (the broker went away mid-call; already retried ``connection_retries``
times), :class:`RemoteError` (the server raised; ``exc_type``/``module``/``message``), with
subclasses :class:`NoSuchMethod` and :class:`UnsupportedVersion`. All derive from
:class:`RpcError`.

Nothing is imported here (the value modules ``events``, ``server_replies``, ``resources`` and
``errors`` stay free of AMQP and asyncio): import the submodules, e.g.
``aovs.rpc.amqp.RpcTransport``, ``aovs.rpc.server_api.NeutronServerApi``,
``aovs.rpc.notifications.NotificationConsumer``, ``aovs.rpc.state_report.StateReporter``.

Tests, demo and benchmarks use the neutron-server simulator in :mod:`aovs.testing`
(``aovs simulate-server``), not part of this package.
"""
