"""The sidecar's outbound HTTP: one pooled aiohttp session for the app and other sidecars.

aiohttp rather than httpx here: delivering an event costs a few hundred microseconds of
client CPU with aiohttp against about a millisecond with httpx, and delivery is the
sidecar's hot path (bench/pubsub.py). The session is configured to be a transparent relay:
no redirects followed, no decompression, no headers added that the caller did not send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import aiohttp
from starlette.responses import StreamingResponse
from yarl import URL

# Hop-by-hop headers (RFC 9110 §7.6.1) and ones our server sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

ClientError = aiohttp.ClientError


def new_session() -> aiohttp.ClientSession:
    """Create inside the running event loop."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256, enable_cleanup_closed=True),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
        auto_decompress=False,
        skip_auto_headers=_AUTO_HEADERS,
    )


def exact_url(url: str) -> URL:
    """Keep the path exactly as escaped (``%2F`` stays ``%2F``)."""
    return URL(url, encoded=True)


async def relay(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
) -> StreamingResponse:
    """Send a request and stream the answer back as it arrives (SSE works through it)."""
    response = await session.request(
        method, exact_url(url), headers=list(headers), data=body, allow_redirects=False
    )
    # Our server writes its own Date header; the upstream one would be a duplicate.
    kept = [
        (name, value)
        for name, value in response.raw_headers
        if name.decode("latin-1").lower() not in HOP_BY_HOP and name.lower() != b"date"
    ]

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        finally:
            response.release()

    streamed = StreamingResponse(stream(), status_code=response.status)
    streamed.raw_headers = kept
    return streamed
