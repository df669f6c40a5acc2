"""Live sockets of the signing pages: the queue (new work arrives) and one batch (job number, PIN, progress)."""

from __future__ import annotations

from signing.consumers.batch import BatchConsumer
from signing.consumers.queue import QueueConsumer

__all__ = ["BatchConsumer", "QueueConsumer"]
