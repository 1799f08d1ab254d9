"""Names the daemon and the generated files must agree on; this module imports nothing.

The daemon links to what ``generate`` writes (the status page to the Grafana drill-down) by
these names, without loading the generators or the Grafana SDK they build with.
"""

__all__ = ["AGENT_UID", "OVERVIEW_UID"]

#: Stable Grafana dashboard uids: ``alerting.dashboard_url``, bookmarks and the status page's
#: links point at them.
OVERVIEW_UID = "agent-quality"
AGENT_UID = "agent-quality-agent"
