"""PromQL string literals: quoting for the printer and unquoting (Go rules) for the guard."""

from __future__ import annotations

import re

from proxy.promql.errors import QuerySyntaxError

_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}
_QUOTE_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\v": "\\v",
}
_NEEDS_ESCAPE = re.compile(r'[\\"\x00-\x1f\x7f\u0080-\u009f\u2028\u2029]')
_LEGACY_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LEGACY_METRIC = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    simple = _QUOTE_ESCAPES.get(ch)
    if simple is not None:
        return simple
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def quote(value: str) -> str:
    """A double-quoted PromQL string literal whose unescaped value is exactly `value`."""
    return '"' + _NEEDS_ESCAPE.sub(_escape_char, value) + '"'


def is_legacy_label(name: str) -> bool:
    """True when `name` may be written unquoted as a label name (Prometheus 2.x syntax)."""
    return _LEGACY_LABEL.fullmatch(name) is not None


def is_legacy_metric(name: str) -> bool:
    """True when `name` may be written unquoted as a metric name."""
    return _LEGACY_METRIC.fullmatch(name) is not None


def label_name(name: str) -> str:
    """A label name as PromQL text: bare when legacy-valid, quoted otherwise."""
    return name if is_legacy_label(name) else quote(name)


def _hex(text: str, start: int, count: int) -> int:
    digits = text[start : start + count]
    if len(digits) != count or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise QuerySyntaxError("invalid escape sequence in string literal")
    return int(digits, 16)


def unquote(token: str) -> str:
    """The value of a PromQL string literal token (`"…"`, `'…'` with Go escapes, or `` `…` ``)."""
    if token[0] == "`":
        return token[1:-1]
    body = token[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1] if i + 1 < len(body) else ""
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc == "x":
            out.append(chr(_hex(body, i + 2, 2)))
            i += 4
        elif esc == "u":
            out.append(chr(_hex(body, i + 2, 4)))
            i += 6
        elif esc == "U":
            code = _hex(body, i + 2, 8)
            if code > 0x10FFFF:
                raise QuerySyntaxError("invalid escape sequence in string literal")
            out.append(chr(code))
            i += 10
        elif esc in "01234567" and esc:
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or any(c not in "01234567" for c in digits):
                raise QuerySyntaxError("invalid escape sequence in string literal")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise QuerySyntaxError("invalid escape sequence in string literal")
    return "".join(out)
