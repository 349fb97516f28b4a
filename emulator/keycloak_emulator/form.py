"""Ordered form parameters, repeated keys kept (UMA sends `permission` many times)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Form:
    """`application/x-www-form-urlencoded` pairs in arrival order."""

    pairs: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> Form:
        """Build from any iterable of pairs."""
        return cls(tuple(pairs))

    def get(self, key: str) -> str | None:
        """The first value of `key`, like JAX-RS `getFirst`."""
        return next((v for k, v in self.pairs if k == key), None)

    def getall(self, key: str) -> list[str]:
        """Every value of `key`, in order."""
        return [v for k, v in self.pairs if k == key]

    def __contains__(self, key: object) -> bool:
        """Whether `key` was sent at all."""
        return any(k == key for k, _ in self.pairs)
