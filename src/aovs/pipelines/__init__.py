"""Pure flow pipelines: neutron's br-int / br-phys tables as functions of the agent's state.

Nothing here does I/O. Every function returns ``frozenset[Flow]`` for ONE owner on ONE bridge, so
the agent can recompute only what a change touched (see :mod:`aovs.dataplane.compose`).
"""
