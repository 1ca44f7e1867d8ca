"""The dataplane the agent wants: its state in, the desired flows per bridge and owner out (pure).

:mod:`aovs.dataplane.compose` ties the bridge pipelines (:mod:`aovs.pipelines`) and the firewall
driver (:mod:`aovs.firewall`) together; ``desired_flows`` is the specification of what the
reconciler installs, and the agent core computes the same owners incrementally.
"""
