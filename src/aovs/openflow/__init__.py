"""OpenFlow 1.3 to ovs-vswitchd, spoken by aovs itself (no ovs-ofctl, no os-ken app manager).

Nothing is imported here: callers import the submodules (``aovs.openflow.flows``, the Flow
value, stays free of sockets and asyncio). Typical use by the agent, one channel + reconciler
per bridge::

    channel = OpenFlowChannel.for_mgmt_socket(f"{rundir}/br-int.mgmt")
    await channel.start()                     # returns after the first handshake
    reconciler = FlowReconciler(channel, cookie=stable_cookie("br-int"))
    await reconciler.sync(desired_flows)      # full diff -> ONE bundle (0 FlowMods if equal)
    await reconciler.apply(remove=old, add=new)   # a delta, O(len(delta))
    reconciler.flowmods_sent                  # counter for tests/metrics
    channel.subscribe(callback)               # Connected(datapath_id) / Disconnected(reason)
    async for event in channel.events(): ...  # the same, as an async iterator
    await channel.close()

After every reconnect the reconciler dumps its own flows (by cookie) and re-syncs to the last
desired set by itself (an OVS restart replays everything in one bundle from cached bytes; an
agent restart against a switch with the right flows sends nothing). Failures are typed
(``aovs.openflow.errors``): ``BundleError`` (nothing applied; ``.flow`` names the culprit),
``SwitchError``, ``RequestTimeoutError``, ``ChannelClosedError``, ``ProtocolError``.

Modules: ``flows`` (the Flow value), ``channel`` (connection, xids, echo, multipart,
reconnect), ``bundle`` (ONF bundles, all-or-nothing), ``codec`` (os-ken reference encoder and
the flow-stats decoder), ``fast_encoder`` (struct encoder, byte-identical to os-ken),
``flow_stats`` (struct flow-stats decoder, equal to the os-ken path; dumps are handed over as
raw replies and decoded a reply at a time), ``flowmod_cache``, ``reconcile``, ``ofctl_text``
(``to_ofctl`` for logs and baselines).
"""
