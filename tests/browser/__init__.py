"""Tests that drive the proxy's pages in a real headless Chromium."""
