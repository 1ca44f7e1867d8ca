from __future__ import annotations

import aio_pika
import pytest

pytestmark = pytest.mark.integration


async def test_private_vhost_accepts_connections(rabbit_vhost: str) -> None:
    url = rabbit_vhost.replace("rabbit://", "amqp://", 1)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"ping"), routing_key=queue.name)
        message = await queue.get(timeout=5)
        assert message is not None and message.body == b"ping"
