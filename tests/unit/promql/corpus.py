"""Shared loaders and oracles for the PromQL tests (corpus files, binding-side dumps)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser

DATA = Path(__file__).resolve().parents[2] / "data" / "promql"
CORPUS = DATA / "corpus"
_SPACE = re.compile(r"\s+")


def load_lines(name: str) -> list[str]:
    """Queries of a corpus .txt file (one JSON string per line)."""
    with (CORPUS / name).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_jsonl(name: str) -> list[dict[str, object]]:
    """Rows of a corpus .jsonl file."""
    with (CORPUS / name).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def binding_dump(query: str, drop: tuple[str, ...] = ()) -> str:
    """promql-parser's own Debug dump of `query`, whitespace removed, given matchers dropped.

    An oracle independent of the project's converter: two queries with equal dumps (after
    dropping the added matchers) mean the same thing to the parser.
    """
    text = _SPACE.sub("", repr(promql_parser.parse(query)))
    for matcher in drop:
        text = text.replace(matcher, "")
    return text


def regex_matcher_dump(name: str, literal: str) -> str:
    """The whitespace-free Debug dump of an `=~` matcher on a plain literal, with its comma."""
    anchored = json.dumps(f"^(?:{literal})$")
    return f"Matcher{{op:Re(Regex({anchored},),),name:{json.dumps(name)},value:{json.dumps(literal)},}},"


def equal_matcher_dump(name: str, value: str) -> str:
    """The whitespace-free Debug dump of an `=` matcher, followed by its list comma."""
    return f"Matcher{{op:Equal,name:{json.dumps(name)},value:{json.dumps(value)},}},"
