"""Keys of the results cache and of coalesced requests (docs/caching.md#keys).

A key names everything the upstream's answer depends on: a schema version, the hub, the upstream
base URL (tenant path included) and the identity of the proxy's upstream credentials, method,
path, every forwarded parameter (normalised: Thanos' and Prometheus' extra parameters and unknown
ones included) and the forwarded `Accept`/`Accept-Encoding`. The forwarded query already embeds
the caller's scope, so equal keys mean equal answers whoever asks; every hub calls its own cluster
`local-cluster`, so the hub and upstream are part of every key.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping

from proxy.upstream import Upstream, UpstreamRequest

# Bump when what is stored under a key changes shape.
SCHEMA = "prom-keycloak-proxy/results/1"
# Request headers whose value changes the upstream's answer (its media type or encoding).
ANSWER_HEADERS = ("Accept", "Accept-Encoding")


def normalised(pairs: Iterable[tuple[str, str]], drop: Collection[str] = ()) -> list[list[str]]:
    """Parameters sorted by name (the order of one name's values kept), `drop` left out."""
    kept = [(k, v) for k, v in pairs if k not in drop]
    order = sorted(range(len(kept)), key=lambda i: (kept[i][0], i))
    return [[kept[i][0], kept[i][1]] for i in order]


def request_key(
    upstream: Upstream,
    built: UpstreamRequest,
    headers: Mapping[str, str],
    *,
    drop: Collection[str] = (),
    extra: Iterable[str] = (),
) -> bytes:
    """The key of `built` sent to `upstream` with `headers`; `drop` removes parameters the caller
    varies itself (a range's start/end), `extra` adds parts (a piece's bucket)."""
    # URL and body parameters stay apart: the upstream reads a name's body values first (Go's
    # FormValue), so the same pairs split otherwise between the two may ask something else
    params = [normalised(built.query, drop), normalised(built.form or (), drop)]
    parts = [
        SCHEMA,
        upstream.hub.name,
        upstream.url(""),
        upstream.credential_id,
        built.method,
        built.path,
        params,
        [headers.get(name, "") for name in ANSWER_HEADERS],
        list(extra),
    ]
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
