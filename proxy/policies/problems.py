"""A problem found in a policies file, located by file and line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Problem:
    """One finding: where it is and what is wrong."""

    file: str
    line: int
    severity: Severity
    message: str

    def __str__(self) -> str:
        """Render as `file:line: severity: message`, the form editors jump to."""
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"


class PolicyFileError(Exception):
    """A policies file has errors; `problems` lists every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
