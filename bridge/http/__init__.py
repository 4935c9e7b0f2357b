"""The seed's sensing HTTP API (rvagent's), the event stream and the status page."""
