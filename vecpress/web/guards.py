"""What a request must pass before any work: an API key (when keys are set), then a bounded body.

``Guard`` is plain ASGI, in front of the app: a route that needs a key is refused (401) from its
headers alone, before its body is read; a body over ``max_payload_bytes`` is refused from its
Content-Length, or as soon as a chunked body passes it; a body not received within
``body_timeout_s`` gets 408; and the bodies buffered at once stay under
``max_body_bytes_in_flight`` (past it: 503). ``KeyCheck`` compares digests of the presented key
with every known key in constant time; no key reaches a log, an error or ``repr``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from vecpress.infra.search_settings import ApiSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# Routes any client may call: probes and the API's description.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc",
                        "/openapi.json"})
NO_KEY = ("a valid API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")


class KeyCheck:
    """The API keys a request may present; empty: every request passes."""

    def __init__(self, keys: list[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def __repr__(self) -> str:
        return f"KeyCheck({len(self._digests)} keys)"

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def accepts(self, presented: str | None) -> bool:
        if not self._digests:
            return True
        if not presented:
            return False
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        ok = False
        for known in self._digests:  # every key compared: no timing tells which one matched
            ok |= hmac.compare_digest(digest, known)
        return ok

    def presented(self, headers: dict[bytes, bytes]) -> str | None:
        """The key of ``Authorization: Bearer KEY``, else of ``X-API-Key: KEY``."""
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        key = headers.get(b"x-api-key")
        return key.decode("latin-1") if key else None


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *headers]})
    await send({"type": "http.response.body", "body": data})


class Guard:
    """ASGI middleware: the key, then a body bounded in size, time and bytes in flight."""

    def __init__(self, app: App, api: ApiSettings, keys: KeyCheck) -> None:
        self.app, self.api, self.keys = app, api, keys
        self.in_flight = 0

    def _too_large(self, size: str) -> dict[str, Any]:
        return {"detail": f"the request body has {size} bytes: the limit is "
                          f"{self.api.max_payload_bytes:,} (setting api.max_payload_bytes, "
                          "VECPRESS_API_MAX_PAYLOAD_BYTES); send fewer or shorter queries per "
                          "request", "setting": "api.max_payload_bytes"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if scope["path"] not in OPEN_PATHS and not self.keys.accepts(self.keys.presented(headers)):
            await send_json(send, 401, {"detail": NO_KEY}, ((b"www-authenticate", b"Bearer"),))
            return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit()
                                     or int(declared) > self.api.max_payload_bytes):
            await send_json(send, 413, self._too_large(
                f"{int(declared):,}" if declared.isdigit() else "an invalid number of"))
            return
        held = [0]  # body bytes counted in ``in_flight``, given back however this ends
        try:
            try:
                async with asyncio.timeout(self.api.body_timeout_s):
                    body, refusal = await self._read(receive, held)
            except TimeoutError:
                body, refusal = None, (408, {"detail": f"the request body did not arrive within "
                                             f"{self.api.body_timeout_s:g} s (setting "
                                             "api.body_timeout_s)"})
            if refusal is not None:
                await send_json(send, refusal[0], refusal[1],
                                ((b"retry-after", b"1"),) if refusal[0] == 503 else ())
                return
            if body is None:  # the client went away
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.in_flight -= held[0]

    async def _read(self, receive: Receive, held: list[int]
                    ) -> tuple[bytes | None, tuple[int, dict[str, Any]] | None]:
        """(body, refusal): the whole body, or why it was not read (None, None: the client
        left). Each chunk is counted in ``in_flight`` and in ``held[0]``."""
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, None
            chunk = message.get("body", b"")
            if held[0] + len(chunk) > self.api.max_payload_bytes:
                return None, (413, self._too_large(f"over {self.api.max_payload_bytes:,}"))
            if self.in_flight + len(chunk) > self.api.max_body_bytes_in_flight:
                return None, (503, {"detail": "the server is reading too many request bodies; "
                                              "retry shortly"})
            self.in_flight += len(chunk)
            held[0] += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the buffered body once, then waits on the real one (for the
    disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
