"""Who is this client: the registry (static, DCR) and client authentication."""
