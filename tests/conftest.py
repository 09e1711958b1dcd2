"""Shared settings for the fast tests."""

from hypothesis import HealthCheck, settings

# The machines are shared and noisy: a per-example deadline would fail on load, not on a bug.
settings.register_profile("shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-machine")
