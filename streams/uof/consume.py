"""``oddsflow uof consume``: an AMQP queue of UOF messages into Kafka, at least once, no loss.

Deliveries are taken in batches (up to ``batch_max``, or what arrived meanwhile); each
message's records (or its dead letter) are produced, the producer is flushed - Kafka has
confirmed every record - and only then is the batch acknowledged on AMQP (one ``multiple`` ack).
A crash anywhere before that ack leaves the deliveries unacknowledged: RabbitMQ redelivers them
to the next consumer, which produces the same records with the same ``seq`` again; the engine's
stale checks (and the dedup keys of the provider settlement topics) make that harmless.
If Kafka does not confirm, the batch is rejected back to the queue (requeue) and retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import Counter
from typing import Any

from oddsflow.settings import Settings
from oddsflow.streams.uof.settings import UofSettings
from oddsflow.streams.uof.sink import UofSink, now_ms

log = logging.getLogger(__name__)

TICK_S = 1.0


async def consume(
    settings: Settings,
    uof: UofSettings | None = None,
    *,
    stop: asyncio.Event | None = None,
    sink: UofSink | None = None,
) -> Counter[str]:
    import aio_pika

    uof = uof or UofSettings()
    sink = sink or UofSink(settings, uof)
    stop = stop or asyncio.Event()
    counts: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    connection = await aio_pika.connect_robust(uof.effective_amqp_url())
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=max(uof.prefetch, 1))
        exchange: aio_pika.abc.AbstractExchange
        if uof.declare_exchange:
            exchange = await channel.declare_exchange(
                uof.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
        else:
            exchange = await channel.get_exchange(uof.exchange, ensure=True)
        if uof.queue:
            queue = await channel.declare_queue(uof.queue, durable=True)
        else:
            queue = await channel.declare_queue(None, exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=uof.routing_key)
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        tag = await queue.consume(inbox.put, no_ack=False)
        source = f"amqp:{queue.name}"
        flushes = 0
        log.info("consuming %s on %s", queue.name, uof.exchange)
        while not stop.is_set():
            try:
                first = await asyncio.wait_for(inbox.get(), timeout=TICK_S)
            except TimeoutError:
                if sink.tick(now_ms()):
                    await loop.run_in_executor(None, sink.flush)
                continue
            batch = [first]
            while len(batch) < uof.batch_max and not inbox.empty():
                batch.append(inbox.get_nowait())
            for msg in batch:
                handled = sink.handle(msg.body, source, int(msg.delivery_tag or -1), now_ms())
                tr = handled.translation
                counts[tr.kind if tr else "dead_letters"] += 1
            sink.tick(now_ms())
            try:
                await loop.run_in_executor(None, sink.flush)
            except Exception as exc:  # KafkaException: nothing of this batch is acknowledged
                log.error("Kafka did not confirm a batch of %d, requeueing it: %s", len(batch), exc)
                for msg in batch:
                    await msg.nack(requeue=True)
                await asyncio.sleep(1.0)
                continue
            flushes += 1
            if uof.crash_after_flush and flushes >= uof.crash_after_flush:
                os.kill(os.getpid(), signal.SIGKILL)  # the crash test's window: flushed, not acked
            await batch[-1].ack(multiple=True)
            counts["acked"] += len(batch)
        await queue.cancel(tag)
    finally:
        await connection.close()
    return counts


def run_consume(settings: Settings, uof: UofSettings | None = None) -> Counter[str]:
    """Consume until SIGTERM/SIGINT; then finish the batch in hand and stop."""

    async def main() -> Counter[str]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        return await consume(settings, uof, stop=stop)

    return asyncio.run(main())
