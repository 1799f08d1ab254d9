"""Names the daemon and the generated files must agree on; this module imports nothing.

The daemon links to what ``generate`` writes (the status page to the Grafana drill-down) by
these names, and the rules read the metrics by their prefix, without the daemon loading the
generators (or the Grafana SDK they build with) or the generators loading the daemon.
"""

__all__ = ["AGENT_UID", "OVERVIEW_UID", "PREFIX"]

#: Every metric the daemon exports, and every recording rule generated, starts with this.
PREFIX = "agent_quality"

#: Stable Grafana dashboard uids: ``alerting.dashboard_url``, bookmarks and the status page's
#: links point at them.
OVERVIEW_UID = "agent-quality"
AGENT_UID = "agent-quality-agent"
