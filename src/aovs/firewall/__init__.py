"""Security groups as flows: the driver protocol, the registry and the built-in drivers.

See docs/firewall.md. The agent loads a driver by name (``load_driver``) and calls its pure
methods; nothing here touches a socket.
"""

from aovs.firewall.base import (
    BASE_OWNER,
    ENTRY_POINT_GROUP,
    FilteredPort,
    FirewallDriver,
    FirewallDriverError,
    IncrementalFirewallDriver,
    OwnerKey,
    SecurityGroupState,
    available_drivers,
    load_driver,
    port_owner,
)

__all__ = [
    "BASE_OWNER",
    "ENTRY_POINT_GROUP",
    "FilteredPort",
    "FirewallDriver",
    "FirewallDriverError",
    "IncrementalFirewallDriver",
    "OwnerKey",
    "SecurityGroupState",
    "available_drivers",
    "load_driver",
    "port_owner",
]
