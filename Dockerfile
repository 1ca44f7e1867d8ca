# aovs: one image, two roles.
#   target "agent" (default): `aovs agent` (and `aovs simulate-server` for development stacks)
#   target "ovs":             ovsdb-server + ovs-vswitchd with the userspace datapath, for
#                             development stacks on machines without the OVS kernel module
#
# The agent needs, mounted from the hypervisor:
#   /var/run/openvswitch   OVS's run dir: db.sock and the bridges' <bridge>.mgmt sockets
#   /var/lib/aovs          [agent] state_path: the local snapshot that restores the dataplane
#                          after a host reboot before neutron-server answers (a named volume)
#   /etc/aovs/aovs.toml    the configuration (or AOVS_<SECTION>__<OPTION> environment variables)

FROM python:3.11-slim-bookworm AS wheels
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM debian:bookworm-slim AS ovs
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openvswitch-switch \
 && rm -rf /var/lib/apt/lists/*
COPY docker/ovs-entrypoint /usr/local/bin/ovs-entrypoint
VOLUME ["/var/run/openvswitch", "/etc/openvswitch"]
HEALTHCHECK --interval=10s --timeout=3s CMD ovs-vsctl --timeout=2 show >/dev/null || exit 1
ENTRYPOINT ["/usr/local/bin/ovs-entrypoint"]

FROM python:3.11-slim-bookworm AS agent
# openvswitch-common only for operators' ovs-vsctl/ovs-ofctl inside the container (debugging);
# the agent itself never runs them.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openvswitch-common \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 42435 aovs \
 && useradd --system --uid 42435 --gid aovs --home-dir /var/lib/aovs --shell /usr/sbin/nologin aovs \
 && install -d -o aovs -g aovs /var/lib/aovs /etc/aovs
COPY --from=wheels /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels aovs && rm -rf /wheels
COPY config/aovs.toml /etc/aovs/aovs.toml
COPY docker/agent-entrypoint /usr/local/bin/agent-entrypoint
ENV AOVS_CONFIG=/etc/aovs/aovs.toml \
    AOVS_AGENT__STATE_PATH=/var/lib/aovs \
    AOVS_AGENT__METRICS_BIND=0.0.0.0:9105
VOLUME ["/var/lib/aovs"]
EXPOSE 9105
# OVS creates its sockets root:root 0750 by default. Run as root (the default here), or run OVS
# so that the aovs group (gid 42435) may use them and start the container with --user 42435.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s CMD ["aovs", "status", "--health"]
ENTRYPOINT ["/usr/local/bin/agent-entrypoint"]
CMD ["agent"]
