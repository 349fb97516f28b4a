"""YAML loading that remembers the line of every value, so problems can name file:line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass
class LocatedDocument:
    """Plain data from a YAML file plus the 1-based line of every node, keyed by JSON path."""

    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    duplicates: list[tuple[Path_, int]] = field(default_factory=list)

    def line_of(self, path: Path_) -> int:
        """Line of the node at `path`, or of its nearest located ancestor."""
        probe = tuple(path)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), 1)


def load_located(text: str) -> LocatedDocument:
    """Parse one YAML document with the safe loader, keeping line numbers and duplicate keys."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    doc = LocatedDocument(data=None)
    if node is None:
        return doc
    doc.data = _convert(node, (), doc)
    return doc


def _convert(node: yaml.Node, path: Path_, doc: LocatedDocument) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            child = (*path, str(key))
            if key in out:
                doc.duplicates.append((child, key_node.start_mark.line + 1))
            doc.lines[child] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, child, doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), doc) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    # Reuse the safe constructor so `true`, `3` and `null` mean what YAML says they mean.
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(None, None, "mapping keys must be scalars", node.start_mark)
    return yaml.SafeLoader("").construct_object(node, deep=True)
