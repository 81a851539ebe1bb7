"""Test helpers shared across packages (real broker, protocol oracle, media server)."""
