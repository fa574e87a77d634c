"""The protected-resource side: bearer verification, identity headers, relay."""
