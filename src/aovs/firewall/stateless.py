"""Which ports the ``openvswitch`` driver filters without conntrack (stateless security groups).

A stateless security group (``stateful=False``) admits exactly the packets its rules describe, in
each direction, and nothing else: no reply to a connection the port opened passes unless an
ingress rule admits it. neutron's own ``openvswitch`` firewall has no stateless path (it treats
such groups as stateful); the semantics here are those of neutron's other implementations:
``iptables_hybrid`` takes the port's traffic out of conntrack (``-j CT --notrack``) so its
``RELATED,ESTABLISHED`` accept never matches, and OVN turns each rule into an
``allow-stateless`` ACL. How the openvswitch driver lays that out in flows is in
aovs.firewall.openvswitch and docs/firewall.md.

Statefulness is a property of the port: neutron-server refuses a port with both kinds of group
(``_validate_sgs_for_port``), so a port with any stateless group is filtered statelessly, all
of its rules included. That is the stricter reading of a mix that slipped through: no group's
rules implicitly admit replies. (neutron's iptables driver looks at the first rule of the first
group only.) The wire carries ``stateful`` on each rule, so a rule that says ``False`` makes its
group stateless too; a group with no rules cannot say, and is taken as stateful (it admits
nothing either way).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aovs.firewall.base import SecurityGroupState
from aovs.model import SecurityGroup

LOG = logging.getLogger(__name__)
_EMPTY = SecurityGroup(id="")


def group_is_stateless(group: SecurityGroup) -> bool:
    """The group's flag, or any of its rules' (neutron copies the group's flag onto each)."""
    return not group.stateful or any(not rule.stateful for rule in group.rules)


def stateless_groups(sg_ids: Iterable[str], sgs: SecurityGroupState) -> list[str]:
    """The known groups among ``sg_ids`` that are stateless, sorted (unknown ones: none)."""
    found = []
    for sg_id in sorted(set(sg_ids)):
        group = sgs.groups.get(sg_id)
        if group is not None and group_is_stateless(group):
            found.append(sg_id)
    return found


def is_stateless(sg_ids: Iterable[str], sgs: SecurityGroupState) -> bool:
    """Whether a port in these groups is filtered without conntrack (any stateless group)."""
    return bool(stateless_groups(sg_ids, sgs))


def port_is_stateless(port_name: str, sg_ids: Iterable[str], sgs: SecurityGroupState) -> bool:
    """As is_stateless, and say so when the port mixes both kinds (neutron forbids it)."""
    ids = sorted(set(sg_ids))
    stateless = stateless_groups(ids, sgs)
    if not stateless:
        return False
    # a group without rules cannot say it is stateless on the wire: not a mix
    stateful = [
        sg_id for sg_id in ids if sg_id not in stateless and sgs.groups.get(sg_id, _EMPTY).rules
    ]
    if stateful:
        LOG.warning(
            "port %s has stateful security groups %s and stateless ones %s (neutron-server "
            "forbids the mix): filtering it statelessly, no group admits replies implicitly",
            port_name,
            ", ".join(stateful),
            ", ".join(stateless),
        )
    return True


def stateless_conj_id(conj_id: int) -> int:
    """The one conjunction id a stateless port's remote-group rule uses: the odd ``+1`` slot
    of the rule's (even) id pair, matching any connection state. Parity tells the member flows
    which kind an id is: even ids are stateful pairs (est, new), odd ids stateless."""
    return conj_id + 1


def is_stateless_conj_id(conj_id: int) -> bool:
    return conj_id % 2 == 1
