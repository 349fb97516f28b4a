"""Unit tests of the PromQL security core."""
