"""Agent extensions (neutron's ``[agent] extensions``): QoS today, third parties by entry point.

See :mod:`aovs.extensions.base` for the contract. Nothing is imported here: the pure core loads
``base`` and the built-ins by name; the shell alone loads ``interface_writes`` (OVSDB I/O).
"""
