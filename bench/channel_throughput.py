"""Sends per second per channel provider against the simulator, next to a bare httpx client sending the same
requests to the same simulator, in the same run. The ratio is what Herald's provider code costs on top of HTTP.

Run: `make bench-channels` (or `.venv/bin/python -m bench.channel_throughput --sends 400 --concurrency 16`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench.common import Row, rate_row
from channels.base import OutboundMessage
from channels.registry import provider_class
from channels.rendering.render import Renderer
from consumers.app import load_catalog
from consumers.dev.broker import free_port
from consumers.dev.devstack import start_herald, wait_http
from consumers.dev.processes import stop_process
from schemas.settings import Settings

# provider key -> (event type rendered, recipient address); webhook's address is filled in with the sim URL.
CASES: dict[str, tuple[str, str]] = {
    "sms.twilio": ("otp.requested", "+34600111222"),
    "sms.vonage": ("otp.requested", "+34600111222"),
    "voice.twilio": ("otp.requested", "+4915112345678"),
    "whatsapp.meta": ("appointment.reminder", "+34600111222"),
    "push.fcm": ("alert.weather", "fcm-token-bench"),
    "email.sendgrid": ("order.confirmed", "ana@example.com"),
    "webhook.standard": ("order.confirmed", ""),
}
GOAL = 0.8


class Recording(httpx.AsyncBaseTransport):
    """Passes requests through and keeps the last one, so the bare client can replay it byte for byte."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.last: httpx.Request | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.last = request
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def timed(n: int, concurrency: int, one: Callable[[int], Awaitable[object]]) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def run(i: int) -> None:
        async with gate:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(run(i) for i in range(n)))
    return time.perf_counter() - started


async def measure(key: str, settings: Settings, renderer: Renderer, n: int, concurrency: int,
                  rounds: int = 3) -> tuple[float, float]:
    event_type, address = CASES[key]
    channel = key.split(".")[0]
    if channel == "webhook":
        address = f"{settings.sim_url}/customer/webhook"
    catalog = load_catalog(settings)
    rendered = renderer.render(event_type, channel, locale="es-ES", timezone="Europe/Madrid",
                               context={"to": {"name": "Ana", "id": "u1"}, "payload": catalog.types[event_type].sample,
                                        "message_id": "msg-bench", "event_id": "evt-bench", "tenant": None})
    entry = catalog.types[event_type]
    options = {"keypad": dict(entry.keypad)} if entry.keypad else {}
    transport = Recording()
    provider = provider_class(key).from_settings(settings, transport=transport)

    def message(i: int) -> OutboundMessage:
        return OutboundMessage(message_id=f"msg-bench-{i}", channel=channel, address=address, rendered=rendered,
                               idempotency_key=f"k{i}", display_name="Ana", locale="es-ES", event_type=event_type,
                               metadata={"message_id": f"msg-bench-{i}", "recipient_id": "u1"}, options=options)

    await provider.send(message(-1))  # warm up, and capture one request to replay
    captured = transport.last
    assert captured is not None
    herald_times, bare_times = [], []
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64, max_keepalive_connections=32)) as bare:
        async def replay(_: int) -> None:
            (await bare.request(captured.method, captured.url, headers=captured.headers,
                                content=captured.content)).raise_for_status()
        await replay(-1)
        # Alternating rounds, median of each side: one round is a second or two, which a burst of other load on
        # the machine can halve.
        for r in range(rounds):
            first = r * n

            async def send(i: int) -> None:
                await provider.send(message(first + i))  # noqa: B023 (awaited within this round)
            herald_times.append(await timed(n, concurrency, send))
            bare_times.append(await timed(n, concurrency, replay))
    await provider.close()
    return statistics.median(herald_times), statistics.median(bare_times)


async def run(n: int, concurrency: int, rounds: int = 3) -> list[tuple[str, float, float]]:
    """(provider, Herald sends/s, bare httpx sends/s) for every provider in `CASES`."""
    sim_port = free_port()
    data = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    # Callbacks go to a port nobody listens on and are not retried: both sides trigger the same ones.
    settings = Settings(sim_url=f"http://127.0.0.1:{sim_port}", sim_port=sim_port, secret="bench-secret-0123456789",
                        public_url=f"http://127.0.0.1:{free_port()}", data_dir=data)
    os.environ["HERALD_WEBHOOK_ALLOW_PRIVATE"] = "true"
    sim = start_herald("sim", settings, data / "sim.log", {"HERALD_SIM_CALLBACK_RETRIES": "0",
                                                          "HERALD_SIM_CALLBACK_DELAY_MS": "0"})
    try:
        await asyncio.to_thread(wait_http, f"{settings.sim_url}/_sim/health", 30, sim)
        renderer = Renderer(globals_={"brand": "Herald Shop"})
        results = []
        for key in CASES:
            herald, raw = await measure(key, settings, renderer, n, concurrency, rounds)
            results.append((key, n / herald, n / raw))
        return results
    finally:
        stop_process(sim)


def rows(results: list[tuple[str, float, float]], n: int, concurrency: int, rounds: int = 3) -> list[Row]:
    return [rate_row(key, herald, bare, GOAL, unit="sends/s", bare_unit="sends/s httpx",
                     notes=[f"HTTP channels: {n} sends per round, {concurrency} in flight, against the provider "
                            f"simulator; median of {rounds} alternating rounds per side"]
                     if i == 0 else [])
            for i, (key, herald, bare) in enumerate(results)]


async def main(n: int, concurrency: int, rounds: int) -> None:
    results = await run(n, concurrency, rounds)
    print(f"{n} sends per provider, {concurrency} in flight, simulator in its own process")
    print(f"{'provider':<18}{'Herald sends/s':>16}{'bare httpx/s':>15}{'ratio':>8}")
    for key, herald, bare in results:
        print(f"{key:<18}{herald:>16.0f}{bare:>15.0f}{herald / bare:>8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sends", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per side; the median is kept")
    args = parser.parse_args()
    asyncio.run(main(args.sends, args.concurrency, args.rounds))
