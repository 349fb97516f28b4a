"""Shared test support: real Prometheus environments, the no-leak oracle, pytest fixtures."""
