"""Seeing what the proxy does: events, logs, the audit trail, metrics, flow traces."""
