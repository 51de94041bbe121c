"""Keep-alive HTTP clients for requests pinned to a checked address, one client per host name.

The webhook channel connects to the IP address its SSRF guard checked, not to the name in the customer's URL
(channels/providers/webhook.py). httpx pools connections by the URL's origin, which is then that address: two
customers' hosts on one IP (a shared load balancer, a CDN) would share connections, and a TLS connection verified
for one name would carry requests for the other. One client per host name keeps each host's connections its own
and lets requests to the same host reuse them, instead of a new connection (and TLS handshake) per request. The
least recently used clients beyond `size` are closed once their requests are done.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx

HOSTS_KEPT = 128


@dataclass(slots=True)
class _Entry:
    client: httpx.AsyncClient
    users: int = 0
    evicted: bool = False


class HostClients:
    """httpx clients by host name, the `size` most recently used kept open. `make` builds one client; with
    `closes` false (a transport shared by every client, as tests inject) evicted clients are dropped unclosed."""

    def __init__(self, make: Callable[[], httpx.AsyncClient], *, size: int = HOSTS_KEPT, closes: bool = True) -> None:
        self._make = make
        self._size = size
        self._closes = closes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @contextlib.asynccontextmanager
    async def client(self, host: str) -> AsyncIterator[httpx.AsyncClient]:
        """The client for `host` (name as in the URL, without port), held open while the block runs."""
        entry = self._entries.get(host)
        if entry is None:
            entry = self._entries[host] = _Entry(self._make())
            await self._evict()
        else:
            self._entries.move_to_end(host)
        entry.users += 1
        try:
            yield entry.client
        finally:
            entry.users -= 1
            if entry.evicted and entry.users == 0:
                await self._close(entry)

    async def _evict(self) -> None:
        while len(self._entries) > self._size:
            _, oldest = self._entries.popitem(last=False)
            oldest.evicted = True
            if oldest.users == 0:
                await self._close(oldest)

    async def _close(self, entry: _Entry) -> None:
        if self._closes:
            await entry.client.aclose()

    async def aclose(self) -> None:
        """Close every client (the provider is closing: no request is running any more)."""
        entries, self._entries = list(self._entries.values()), OrderedDict()
        for entry in entries:
            await self._close(entry)
