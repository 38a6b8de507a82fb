"""How cluster managers call fencekit.

``fence_agent`` speaks the fence-agent interface Pacemaker's fencer uses
(options on standard input, actions, metadata XML, exit codes);
``power_agent`` and ``agents`` define fencekit's fence agents on top of
it; ``ocf`` speaks the OCF resource-agent interface for health checks.
Exit codes exist only here, at the boundary.
"""
