"""The upstream identity provider: one small interface, one module per provider."""
