"""OpenFlow 1.3 to ovs-vswitchd, spoken by aovs itself (no ovs-ofctl, no os-ken app manager).

Typical use by the agent, one channel + reconciler per bridge::

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

from aovs.openflow.bundle import BundleEntry, commit_bundle
from aovs.openflow.channel import ChannelEvent, Connected, Disconnected, OpenFlowChannel
from aovs.openflow.errors import (
    BundleError,
    ChannelClosedError,
    OpenFlowError,
    ProtocolError,
    RequestTimeoutError,
    SwitchError,
    VersionMismatchError,
)
from aovs.openflow.ofctl_text import to_ofctl
from aovs.openflow.reconcile import FlowReconciler, stable_cookie

__all__ = [
    "BundleEntry",
    "BundleError",
    "ChannelClosedError",
    "ChannelEvent",
    "Connected",
    "Disconnected",
    "FlowReconciler",
    "OpenFlowChannel",
    "OpenFlowError",
    "ProtocolError",
    "RequestTimeoutError",
    "SwitchError",
    "VersionMismatchError",
    "commit_bundle",
    "stable_cookie",
    "to_ofctl",
]
