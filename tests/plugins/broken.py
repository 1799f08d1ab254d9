"""A plugin module whose import fails, as a user's buggy module would."""

from __future__ import annotations

raise RuntimeError("plugin misconfigured: MY_API_URL is not set")
