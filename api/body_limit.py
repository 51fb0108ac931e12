"""An ASGI middleware answering 413 to a request body past `max_bytes`, before anything parses it:
FastAPI parses a JSON body before a route's dependencies run, so without it anyone, with no
token, could make the server parse megabytes (a 30 MB body to POST /v1/devices: 0.7 s of one
core). Every body this API takes is a few kilobytes (a device, a key, a trip).

A body sent in chunks is read up to the bound here and handed on whole; any other is judged by
its Content-Length."""

import json

MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            length = headers.get(b"content-length")
            if length is not None and (not length.strip().isdigit() or int(length) > self.max_bytes):
                return await self._refuse(send)
            return await self.app(scope, receive, send)
        # Sent in chunks: counted as it comes, whatever Content-Length says (h11 reads the chunks
        # when a request has both, and a small Content-Length would let any body through).
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > self.max_bytes:
                return await self._refuse(send)
            if not message.get("more_body"):
                break
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replayed():
            nonlocal whole
            if whole is not None:
                message, whole = whole, None
                return message
            return await receive()

        await self.app(scope, replayed, send)

    async def _refuse(self, send):
        body = json.dumps({"detail": f"the request body is over {self.max_bytes} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
