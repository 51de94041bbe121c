"""Memory: a worker's resident memory after N events next to its memory after N/10, in the same run (issue 13's
acceptance: after 200,000 within 15% of after 20,000, with state on disk and a bounded cache). Also read from the
worker's admin `/metrics`: its state size per store (`herald_state_keys{store}`; n/a where the worker has none).

Every event goes to its own recipient, so every one leaves state behind (dedupe key, cap counter, send record).
Run: `make bench` (the whole table, 20,000 / 2,000 by default) or
`.venv/bin/python -m bench.memory --events 200000` (the acceptance size: about 15 minutes at 250 events/s).
"""

from __future__ import annotations

import argparse
import asyncio

from bench.common import Row, WorkerProcess, bench_stack, format_state, order_events, wait_for_mail
from consumers.cli.publish import EventProducer
from consumers.dev.mailsink import MailSink
from consumers.worker import TRIM_EVERY

GOAL = 1.15
CHUNK = 5000


async def publish_and_wait(producer: EventProducer, sink: MailSink, offset: int, n: int) -> None:
    """Publish events `offset`..`offset + n` in chunks (a list of 200,000 events is itself hundreds of MB) and wait
    until the sink has them all."""
    for start in range(offset, offset + n, CHUNK):
        for event in order_events(min(CHUNK, offset + n - start), offset=start):
            await producer.publish(event)
        await producer.flush()
    await wait_for_mail(sink, offset + n, max(600.0, n / 20))


async def settled_rss(worker: WorkerProcess) -> float:
    """RSS once the worker had a moment to finish what it wrote after the last send (state, statuses) and gave
    the memory it freed back (it trims every `TRIM_EVERY` seconds: consumers/worker.py)."""
    await asyncio.sleep(TRIM_EVERY + 2)
    return worker.rss_mb()


async def run(n: int) -> Row:
    small = max(1, n // 10)
    async with bench_stack() as stack:
        worker = stack.workers[0]
        at_start = worker.rss_mb()
        async with EventProducer(stack.settings) as producer:
            await publish_and_wait(producer, stack.sink, 0, small)
            rss_small, keys_small = await settled_rss(worker), await worker.state_keys()
            await publish_and_wait(producer, stack.sink, small, n - small)
            rss_large, keys_large = await settled_rss(worker), await worker.state_keys()
    ratio = rss_large / rss_small
    per_event = (rss_large - rss_small) * 1024 / (n - small) if n > small else 0.0
    return Row("memory (worker RSS)", f"{rss_large:.0f} MB after {n:,}", f"{rss_small:.0f} MB after {small:,}",
               f"{ratio:.2f}", f"<= {GOAL}", ratio <= GOAL,
               notes=[f"memory: RSS {at_start:.0f} MB at start, {rss_small:.0f} MB after {small:,} events, "
                      f"{rss_large:.0f} MB after {n:,} ({per_event:.2f} KB per event in between)",
                      f"memory: state keys after {small:,}: {format_state(keys_small)}",
                      f"memory: state keys after {n:,}: {format_state(keys_large)}"])


async def main(n: int) -> None:
    row = await run(n)
    print(f"worker RSS   {row.herald} vs {row.bare}: ratio {row.ratio} (goal {row.goal}: "
          f"{'met' if row.passed else 'BELOW'})")
    for note in row.notes:
        print(note)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="N; memory is also read after N/10")
    asyncio.run(main(parser.parse_args().events))
