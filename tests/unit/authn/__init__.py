"""Tests of bearer and Basic authentication against small loopback Keycloak fakes."""
