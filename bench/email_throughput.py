"""Email end to end: events per second from publish to the SMTP sink, next to aiosmtplib alone sending a
prebuilt message to the same kind of sink on as many connections as Herald's pool (`HERALD_SMTP_POOL_SIZE`), and
the raw Kafka round trip on the same broker, all in one run.

Run: `make bench` (the whole table) or `.venv/bin/python -m bench.email_throughput --events 2000`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from bench.common import Row, bench_stack, kafka_round_trip, order_events, rate_row, start_helper, wait_for_mail
from consumers.cli.publish import EventProducer
from consumers.dev.mailsink import MailSink

GOAL = 0.8


async def smtp_ceiling(sink: MailSink, port: int, connections: int, n: int, raw: bytes, folder: str) -> float:
    """Seconds aiosmtplib alone takes to send `raw` `n` times on `connections` connections to `sink`."""
    eml = f"{folder}/prebuilt.eml"
    with open(eml, "wb") as f:
        f.write(raw)
    before = len(sink)
    blaster = await start_helper("smtp_blast", str(port), str(connections), str(n), eml)
    assert blaster.stdin is not None and blaster.stdout is not None
    blaster.stdin.write(b"go\n")
    await blaster.stdin.drain()
    elapsed = float((await asyncio.wait_for(blaster.stdout.readline(), 600)).decode())
    await blaster.wait()
    if len(sink) - before != n:
        raise RuntimeError(f"the sink got {len(sink) - before} of {n} prebuilt messages")
    return elapsed


async def run(n: int, profile: Path | None = None) -> tuple[Row, dict[str, float]]:
    batch = order_events(n)
    async with bench_stack() as stack:
        spy = None
        async with EventProducer(stack.settings) as producer:
            await producer.publish(order_events(1, offset=n)[0] | {"id": "warm-up"}, wait=True)
            await wait_for_mail(stack.sink, 1, 60)
            if profile is not None:  # py-spy samples the worker while it drains the events
                spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                                        "-o", str(profile), "-r", "200", "-p", str(stack.workers[0].pid)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                await asyncio.sleep(1)
            started, cpu = time.perf_counter(), stack.workers[0].cpu_seconds()
            for event in batch:
                await producer.publish(event)
            await producer.flush()
            herald = await wait_for_mail(stack.sink, n + 1, 600) - started
            cpu_ms = (stack.workers[0].cpu_seconds() - cpu) * 1000 / n
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
                await asyncio.to_thread(spy.wait, 30)
        prebuilt = stack.sink.raw[-1]  # one of Herald's own messages, byte for byte
        connections = stack.settings.smtp_pool_size
        bare = await smtp_ceiling(stack.sink, stack.settings.smtp_port, connections, n, prebuilt, str(stack.folder))
        kafka = await kafka_round_trip(stack.settings.kafka_bootstrap, [orjson.dumps(e) for e in batch])
    row = rate_row("email end to end", n / herald, n / bare, GOAL, unit="events/s", bare_unit="msgs/s aiosmtplib",
                   notes=[f"email: worker CPU {cpu_ms:.2f} ms per event (the core it runs on: "
                          f"{1000 / cpu_ms:,.0f} events/s if it had one to itself)",
                          f"email: {n} events publish -> SMTP sink, one worker; aiosmtplib sends one of Herald's own "
                          f"messages ({len(prebuilt):,} bytes) {n} times on {connections} connections (Herald's "
                          f"pool size) to the same kind of sink; raw Kafka produce+consume of the same events: "
                          f"{n / kafka:,.0f} records/s"])
    return row, {"herald": n / herald, "bare": n / bare, "kafka": n / kafka, "cpu_ms": cpu_ms}


async def main(n: int, profile: Path | None) -> None:
    row, rates = await run(n, profile)
    print(f"events                       {n}")
    print(f"raw Kafka produce+consume    {rates['kafka']:8.0f} records/s")
    print(f"aiosmtplib prebuilt messages {rates['bare']:8.0f} messages/s")
    print(f"Herald publish -> SMTP sink  {rates['herald']:8.0f} events/s")
    print(f"worker CPU per event         {rates['cpu_ms']:8.2f} ms")
    print(f"ratio Herald / aiosmtplib    {row.ratio:>8} (goal {GOAL})")
    print(f"ratio Herald / raw Kafka     {rates['herald'] / rates['kafka']:8.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--py-spy", type=Path, metavar="FILE", help="record the worker with py-spy (installed in the "
                        "venv by hand: pip install py-spy) into FILE, collapsed stacks; summarise it with "
                        "`python -m bench.profile_summary FILE`")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.py_spy))
