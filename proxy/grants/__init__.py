"""The token endpoint's grants: authorization code and refresh (RFC 6749 §4.1, §6)."""
