"""Authentication: who is calling (Bearer JWTs verified locally, Basic client credentials)."""

from proxy.authn.authenticator import Authenticator
from proxy.authn.identity import Identity

__all__ = ["Authenticator", "Identity"]
