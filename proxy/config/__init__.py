"""The typed settings object, built once at start-up from the environment."""
