"""The agent: the only stateful core, and the shell that ties the adapters to it.

- :mod:`aovs.agent.core`: ``AgentCore``, every decision as plain code over plain data (no I/O);
- :mod:`aovs.agent.state`, :mod:`~aovs.agent.vlans`, :mod:`~aovs.agent.ledger`,
  :mod:`~aovs.agent.reports`, :mod:`~aovs.agent.schedule`: its pieces;
- :mod:`aovs.agent.snapshot`: the local snapshot that restores the dataplane after a host reboot
  (:mod:`~aovs.agent.snapshot_writer` writes it);
- :mod:`aovs.agent.agent`: ``Agent``, the asyncio shell (OVSDB, OpenFlow, RPC in; plans out).
"""
