"""Reading request parameters from the URL and a form body, exactly once and strictly."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import unquote

from aiohttp import web

from proxy import errors

FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class RequestParams:
    """Parameters as they arrived: `url` from the query string, `body` from a form body."""

    url: tuple[tuple[str, str], ...]
    body: tuple[tuple[str, str], ...]
    had_body: bool

    def all(self, name: str) -> list[str]:
        """Every value of `name`, URL first then body (Prometheus' union for `match[]`)."""
        return [v for k, v in self.url if k == name] + [v for k, v in self.body if k == name]

    def single(self, name: str, *, required: bool = True) -> str | None:
        """The one value of `name`; refuse it repeated or present in both places."""
        values = self.all(name)
        if len(values) > 1:
            raise errors.BadRequest(
                f"parameter {name!r} given {len(values)} times (URL and body, or repeated); send it once"
            )
        if not values:
            if required:
                raise errors.BadRequest(f"missing parameter {name!r}")
            return None
        return values[0]

    def replaced(self, name: str, values: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """URL and body params with every `name` removed and `values` put where it first arrived."""
        in_body = not any(k == name for k, _ in self.url) and any(k == name for k, _ in self.body)
        url = [(k, v) for k, v in self.url if k != name]
        body = [(k, v) for k, v in self.body if k != name]
        target = body if in_body else url
        target.extend((name, v) for v in values)
        return url, body


def _pair(field: str) -> tuple[str, str]:
    """One `name=value` field exactly as `parse_qsl(keep_blank_values=True, errors="strict")`
    decodes it (`+` is a space, no `=` means an empty value); UnicodeDecodeError when not UTF-8."""
    name, sep, value = field.partition("=")
    return (
        unquote(name.replace("+", " "), encoding="utf-8", errors="strict"),
        unquote(value.replace("+", " "), encoding="utf-8", errors="strict") if sep else "",
    )


def _decode(raw: bytes | str, where: str) -> tuple[tuple[str, str], ...]:
    """Parse `a=b&c=d` strictly as UTF-8 (non-UTF-8 bytes are refused, never guessed)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if not text:
            return ()
        # parse_qsl's own loop: split on "&" only, empty fields skipped
        return tuple(_pair(f) for f in text.split("&") if f)
    except (UnicodeDecodeError, ValueError) as exc:
        raise errors.BadRequest(f"{where} is not valid UTF-8 form data") from exc


# Fields per body: decoding costs ≈ 17 µs a field, so a 1 MiB body of 20,000 `match[]` would hold
# the event loop for ≈ 350 ms (docs: event-loop budget); no client sends more than a few dozen,
# and beyond PROXY_MAX_MATCH_SELECTORS a selectors request is refused anyway.
MAX_BODY_FIELDS = 1000


def _check_field_count(raw: bytes) -> None:
    """400 for a body of more than MAX_BODY_FIELDS fields, counted before decoding any."""
    fields = raw.count(b"&") + 1
    if fields > MAX_BODY_FIELDS:
        raise errors.BadRequest(
            f"request body has {fields} parameters, over the limit of {MAX_BODY_FIELDS} "
            "(at most PROXY_MAX_MATCH_SELECTORS match[] are accepted)"
        )


def _check_media_type(request: web.Request) -> None:
    """Refuse bodies the proxy would interpret differently from the upstream (docs/http.md)."""
    if request.headers.get("Content-Encoding", "").strip():
        raise errors.UnsupportedMediaType("request bodies with a Content-Encoding are not accepted")
    if request.content_type != FORM:
        raise errors.UnsupportedMediaType(
            f"request body must be {FORM}, not {request.content_type or 'unspecified'}"
        )
    charset = request.charset
    if charset is not None and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise errors.UnsupportedMediaType(f"request body charset must be UTF-8, not {charset}")


BODY_READ_TIMEOUT = 10.0  # a client trickling its body (slowloris) must not hold a slot for ever


async def _read_body(request: web.Request, max_body: int) -> bytes:
    """The whole body, bounded in size (413) and in time (408)."""
    content = request.content
    buffer = bytearray()
    if content.is_eof():
        # The whole body came with the headers (a dashboard's form): take it without arming a timer.
        data = content.read_nowait(-1)
        if len(data) > max_body:
            raise errors.PayloadTooLarge(f"request body over {max_body} bytes")
        if content.at_eof():
            return data
        buffer.extend(data)
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT):
            while chunk := await content.read(65536):
                buffer.extend(chunk)
                if len(buffer) > max_body:  # chunked bodies have no Content-Length to check first
                    raise errors.PayloadTooLarge(f"request body over {max_body} bytes")
    except TimeoutError as exc:
        raise errors.RequestTimeout(f"request body not received within {BODY_READ_TIMEOUT:g}s") from exc
    return bytes(buffer)


async def read_params(request: web.Request, max_body: int) -> RequestParams:
    """Read URL and body parameters; 413 for oversized bodies, 415 for foreign bodies."""
    url = _decode(request.rel_url.raw_query_string, "query string")
    if request.method not in ("POST", "PUT", "PATCH"):
        return RequestParams(url, (), False)
    length = request.content_length
    if length is not None and length > max_body:
        raise errors.PayloadTooLarge(f"request body over {max_body} bytes")
    if not request.body_exists or length == 0:
        return RequestParams(url, (), False)
    # Checked before reading: aiohttp would otherwise inflate a gzip body (a decompression bomb).
    if request.headers.get("Content-Encoding", "").strip():
        raise errors.UnsupportedMediaType("request bodies with a Content-Encoding are not accepted")
    # aiohttp reads `Transfer-Encoding: gzip, chunked` as plain chunked: another reader would not.
    codings = [
        c.strip().lower()
        for value in request.headers.getall("Transfer-Encoding", ())
        for c in value.split(",")
        if c.strip()
    ]
    if codings not in ([], ["chunked"]):
        raise errors.UnsupportedMediaType("transfer codings other than chunked are not accepted")
    raw = await _read_body(request, max_body)
    if not raw:
        return RequestParams(url, (), False)  # prometheus-api-client POSTs empty bodies
    _check_field_count(raw)
    _check_media_type(request)
    return RequestParams(url, _decode(raw, "request body"), True)
