"""Add the proxy's `warnings` to a streamed Prometheus JSON answer without decoding its data.

Prometheus writes `warnings` after `data`, so the body is streamed as it arrives and only a tail
is held back. At the end the tail is the whole envelope's end: `…}` when the upstream sent no
warnings (the entry is inserted before the last brace), or `,"warnings":[…]}` when it did (the
proxy's entries go first in that array). `,"warnings":[` cannot occur inside `data`: a quote in a
JSON string is escaped, and labels map to strings, never arrays. Anything unexpected (an error
envelope, a tail that is not JSON's end) passes through unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

# How much of the end is held back; upstream warnings longer than this are kept, ours dropped.
TAIL = 64 * 1024
_KEY = b',"warnings":['


class WarningSplicer:
    """Feed upstream chunks in order; emit what `feed` returns, then what `finish` returns."""

    def __init__(self, warnings: Sequence[str], tail: int = TAIL) -> None:
        self._entries = b",".join(json.dumps(w, ensure_ascii=False).encode() for w in warnings)
        self._tail = tail
        self._held = bytearray()
        self._head = b""  # the first bytes, to recognise a success envelope
        self._sent_key = False  # the upstream's own `warnings` key already went out
        self._edge = b""  # the end of what went out, for a key split across two chunks

    def feed(self, chunk: bytes) -> bytes:
        """Bytes that can be sent now; the last `tail` bytes stay held back."""
        if len(self._head) < 32:
            self._head += chunk[: 32 - len(self._head)]
        self._held += chunk
        if len(self._held) <= self._tail:
            return b""
        cut = len(self._held) - self._tail
        out = bytes(self._held[:cut])
        del self._held[:cut]
        seen = self._edge + out
        self._sent_key = self._sent_key or _KEY in seen
        self._edge = seen[-len(_KEY) :]
        return out

    def finish(self) -> bytes:
        """The held-back end, with the warnings spliced in where that is certain to be valid."""
        held = bytes(self._held)
        self._held.clear()
        if self._sent_key or not self._entries or not self._head.lstrip().startswith(b'{"status":"success"'):
            return held  # an upstream warnings array longer than the tail: left as it is
        end = len(held.rstrip())
        if end == 0 or held[end - 1 : end] != b"}":
            return held
        at = held.rfind(_KEY)
        if at < 0:
            return held[: end - 1] + b',"warnings":[' + self._entries + b"]" + held[end - 1 :]
        start = at + len(_KEY)
        joiner = b"" if held[start : start + 1] == b"]" else b","
        return held[:start] + self._entries + joiner + held[start:]


def splice_all(body: bytes, warnings: Sequence[str]) -> bytes:
    """`body` with `warnings` spliced in (the whole-body form of `WarningSplicer`)."""
    splicer = WarningSplicer(warnings)
    return splicer.feed(body) + splicer.finish()
