"""Test support shipped with aovs: a neutron-server simulator and the simulated cloud it serves.

Used by the tests, ``aovs demo``, ``aovs simulate-server`` and the benchmarks; never by the agent.

- :mod:`aovs.testing.cloud`: :class:`SimulatedCloud` (``SimulatedCloud.load(path)``,
  ``SimulatedCloud.generate(ports=1000)``), networks, ports, security groups, tunnels;
- :mod:`aovs.testing.simulator`: :class:`NeutronServerSimulator`, the RPC side of a
  neutron-server over :mod:`aovs.rpc`;
- :mod:`aovs.testing.simulator_cli`: ``aovs simulate-server``.
"""
