"""aovs: an asyncio reimplementation of neutron-openvswitch-agent."""

__version__ = "0.1.0"
