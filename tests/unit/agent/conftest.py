from __future__ import annotations

import pytest
from agent_builders import TOPO

from aovs.agent.core import AgentCore
from aovs.firewall.noop import NoopFirewall


@pytest.fixture
def core() -> AgentCore:
    return AgentCore(TOPO, NoopFirewall(), needs_security_groups=False, unplug_grace=1.0)
