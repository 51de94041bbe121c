"""Scaling: events per second end to end (publish -> SMTP sink) with two worker processes in one consumer group,
next to one worker, in the same run. Topics get 6 partitions for both runs, so two workers split them evenly.

The goal (1.8) assumes the cores for it: the broker, the SMTP sink and the publisher need CPU too, so on a
2-core machine two workers cannot double anything; the row prints the core count beside the ratio.
Also printed: each worker's state size per store from its admin `/metrics` (`herald_state_keys{store}`), which
with partitioned state should be about half the recipients each.

Run: `make bench` (the whole table) or `.venv/bin/python -m bench.scaling --events 4000`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from bench.common import Row, bench_stack, format_state, order_events, wait_for_mail
from consumers.cli.publish import EventProducer

GOAL = 1.8
PARTITIONS = 6
WARM_UP = 30  # events to different recipients, so every partition (and worker) has sent before the clock starts


async def throughput(workers: int, n: int) -> tuple[float, list[str]]:
    async with bench_stack(workers=workers, partitions=PARTITIONS) as stack:
        async with EventProducer(stack.settings) as producer:
            for event in order_events(WARM_UP, offset=n):
                await producer.publish(event)
            await producer.flush()
            await wait_for_mail(stack.sink, WARM_UP, 120)
            started = time.perf_counter()
            for event in order_events(n):
                await producer.publish(event)
            await producer.flush()
            elapsed = await wait_for_mail(stack.sink, WARM_UP + n, 900) - started
        await asyncio.sleep(1)
        states = [f"{workers} worker(s), worker {i + 1}: {format_state(await w.state_keys())}, "
                  f"RSS {w.rss_mb():.0f} MB" for i, w in enumerate(stack.workers)]
    return n / elapsed, states


async def run(n: int) -> Row:
    one, one_states = await throughput(1, n)
    two, two_states = await throughput(2, n)
    ratio = two / one
    cores = os.cpu_count() or 1
    return Row("2 workers vs 1", f"{two:,.0f} events/s with 2", f"{one:,.0f} events/s with 1", f"{ratio:.2f}",
               f">= {GOAL} (with the cores)", ratio >= GOAL,
               notes=[f"scaling: {n} events publish -> SMTP sink, {PARTITIONS} partitions, on {cores} cores "
                      f"(broker, sink and publisher share them)", *(f"scaling: {s}" for s in one_states + two_states)])


async def main(n: int) -> None:
    row = await run(n)
    print(f"{row.herald} vs {row.bare}: ratio {row.ratio} (goal {row.goal})")
    for note in row.notes:
        print(note)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=4000)
    asyncio.run(main(parser.parse_args().events))
