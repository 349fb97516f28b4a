"""Tests of UMA authorization against small loopback Keycloak fakes and the emulator."""
