"""The reboot benchmark suite: the real agent, a private OVS and RabbitMQ, N ports, every reboot.

``python -m benchmarks.suite --ports 1000`` (``make bench``) runs each scenario against the agent
as a subprocess (its own CPU seconds and peak RSS, from /proc) and measures the time until the
DATAPLANE is correct, judged from the switch (flow counts over OpenFlow, then a full
``ovs-ofctl dump-flows`` compared with what the pure pipelines compute, then ofproto/trace
verdicts), with the practical limit and the legacy way measured in the same run on the same
flows (:mod:`benchmarks.baselines`). Results go to ``benchmarks/results/`` (see README.md).

Modules: ``results`` (schema, ratios, targets; pure), ``report`` (Markdown; pure), ``plots``,
``progress``, ``usage`` (/proc), ``agent_process``, ``world`` (sandbox, vhost, simulator, ports),
``expected`` (the flows the pipelines compute), ``dataplane`` (watching and verifying the
switch), ``stream`` (the packet stream), ``scenarios``, ``__main__`` (the command line).
"""
