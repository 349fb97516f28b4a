"""`proxy.params`: URL and form parameters read once, strictly (docs/http.md: 400/413/415 cases)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy import errors
from proxy.params import RequestParams, read_params

MAX_BODY = 1024
Client = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]


async def echo(request: web.Request) -> web.StreamResponse:
    """Parse with `read_params` and echo the result (or the mapped error)."""
    try:
        params = await read_params(request, MAX_BODY)
    except errors.ProxyError as exc:
        return web.json_response({"error": exc.message}, status=exc.status)
    return web.json_response(
        {
            "url": [list(p) for p in params.url],
            "body": [list(p) for p in params.body],
            "had_body": params.had_body,
        }
    )


@pytest.fixture
async def client(aiohttp_client: Client) -> TestClient[web.Request, web.Application]:
    """A test client for the echo app."""
    app = web.Application()
    app.router.add_route("*", "/p", echo)
    return await aiohttp_client(app)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def parsed(response: Any) -> dict[str, Any]:
    """The echoed JSON of a 200 answer."""
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def test_url_only_for_get(client: TestClient[web.Request, web.Application]) -> None:
    """GET: parameters from the query string in order, blank values kept, `+` is a space."""
    doc = await parsed(await client.get("/p?query=sum+by+(a)+(x)&match[]=a&match[]=b&empty="))
    assert doc == {
        "url": [["query", "sum by (a) (x)"], ["match[]", "a"], ["match[]", "b"], ["empty", ""]],
        "body": [],
        "had_body": False,
    }


async def test_form_body_and_url_both_read(client: TestClient[web.Request, web.Application]) -> None:
    """POST: URL pairs and body pairs are kept apart; `%2B` decodes to a literal plus."""
    doc = await parsed(await client.post("/p?dedup=false", data="query=a%2Bb&time=4", headers=FORM))
    assert doc == {"url": [["dedup", "false"]], "body": [["query", "a+b"], ["time", "4"]], "had_body": True}


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
async def test_empty_body_any_content_type(
    client: TestClient[web.Request, web.Application], content_type: str | None
) -> None:
    """An empty POST body is fine whatever its Content-Type (prometheus-api-client)."""
    headers = {"Content-Type": content_type} if content_type else {}
    doc = await parsed(await client.post("/p?query=up", data=b"", headers=headers))
    assert doc == {"url": [["query", "up"]], "body": [], "had_body": False}


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "multipart/form-data; boundary=x"},
        {"Content-Type": "application/json"},
        {"Content-Type": "application/x-www-form-urlencoded; charset=cp037"},
        {"Content-Type": "application/x-www-form-urlencoded; charset=latin-1"},
        {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
    ],
)
async def test_foreign_bodies_are_415(
    client: TestClient[web.Request, web.Application], headers: dict[str, str]
) -> None:
    """A non-empty body that is not UTF-8 form data, or is content-encoded, is refused with 415."""
    response = await client.post("/p", data=b"query=up", headers=headers)
    assert response.status == 415, await response.text()


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8", "utf_8"])
async def test_utf8_charset_spellings_accepted(
    client: TestClient[web.Request, web.Application], charset: str
) -> None:
    """The UTF-8 charset is accepted in its common spellings."""
    headers = {"Content-Type": f"application/x-www-form-urlencoded; charset={charset}"}
    doc = await parsed(await client.post("/p", data=b"query=%C3%A9", headers=headers))
    assert doc["body"] == [["query", "é"]]


async def test_non_utf8_bytes_are_400(client: TestClient[web.Request, web.Application]) -> None:
    """Percent-encoded bytes that are not UTF-8 are refused, in the body and in the URL."""
    response = await client.post("/p", data=b"query=%FF", headers=FORM)
    assert response.status == 400
    response = await client.get("/p?query=%FF")
    assert response.status == 400


async def test_oversized_body_413(client: TestClient[web.Request, web.Application]) -> None:
    """A body over the limit is 413, with a Content-Length and when chunked."""
    response = await client.post("/p", data=b"q=" + b"a" * MAX_BODY, headers=FORM)
    assert response.status == 413

    async def chunks() -> Any:
        for _ in range(4):
            yield b"a" * (MAX_BODY // 2)

    response = await client.post("/p", data=chunks(), headers=FORM)
    assert response.status == 413


def params(url: list[tuple[str, str]], body: list[tuple[str, str]]) -> RequestParams:
    """A RequestParams as read_params builds it."""
    return RequestParams(tuple(url), tuple(body), bool(body))


def test_single_refuses_duplicates_and_missing() -> None:
    """`single`: one value is returned; repeated, URL+body or missing-required is 400."""
    assert params([("query", "up")], []).single("query") == "up"
    assert params([], [("query", "up")]).single("query") == "up"
    for p in (
        params([("query", "up"), ("query", "up")], []),
        params([("query", "up")], [("query", "up")]),
        params([], [("query", "a"), ("query", "b")]),
    ):
        with pytest.raises(errors.BadRequest, match="query"):
            p.single("query")
    with pytest.raises(errors.BadRequest, match="missing"):
        params([], []).single("query")
    assert params([], []).single("time", required=False) is None


def test_all_is_url_then_body() -> None:
    """`all` lists URL values first, then body values (Prometheus' union for match[])."""
    p = params([("match[]", "a"), ("x", "1")], [("match[]", "b")])
    assert p.all("match[]") == ["a", "b"]


def test_replaced_puts_values_where_they_arrived() -> None:
    """`replaced` removes every value and puts the new ones in the URL, or the body if only there."""
    url, body = params([("match[]", "a"), ("limit", "5")], [("match[]", "b"), ("start", "1")]).replaced(
        "match[]", ["x", "y"]
    )
    assert url == [("limit", "5"), ("match[]", "x"), ("match[]", "y")]
    assert body == [("start", "1")]
    url, body = params([("dedup", "false")], [("query", "up"), ("time", "4")]).replaced("query", ["q"])
    assert url == [("dedup", "false")]
    assert body == [("time", "4"), ("query", "q")]
    url, body = params([], []).replaced("match[]", ["s"])
    assert (url, body) == ([("match[]", "s")], [])


async def test_body_with_too_many_fields_is_refused_before_decoding(
    client: TestClient[web.Request, web.Application], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body over the field bound is a 400 counted on the raw bytes; at the bound it is read."""
    monkeypatch.setattr("proxy.params.MAX_BODY_FIELDS", 20)
    at_bound = "&".join(["match[]=up"] * 20)
    assert len((await parsed(await client.post("/p", data=at_bound, headers=FORM)))["body"]) == 20
    over = await client.post("/p", data=at_bound + "&x=1", headers=FORM)
    assert over.status == 400
    assert "21 parameters" in (await over.json())["error"]
