"""The background publisher: after a commit, the outbox row is handed to one thread of the process,
which publishes it, so that a request never waits on the broker (`OUTBOX_PUBLISH=background`).

Nothing is lost if the process dies first: the row is committed and still pending, and the beat job
(`outbox_dispatch_task`), a worker start or `manage.py outbox_dispatch` publishes it. Nothing is sent
twice by two publishers: every publisher goes through `outbox_dispatch`, which locks the rows.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

EXIT_WAIT_S = 5.0


class BackgroundPublisher:
    """One daemon thread per process, started on first use (and again in a forked child)."""

    def __init__(self, publish: Callable[[list[int]], None], *, on_idle: Callable[[], None] = lambda: None) -> None:
        self._publish = publish
        self._on_idle = on_idle
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._idle = threading.Event()
        self._idle.set()

    def submit(self, message_id: int) -> None:
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # A forked child has the parent's queue but not its thread: start afresh.
                self._queue = queue.SimpleQueue()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, args=(self._queue,), name="outbox-publisher",
                                                daemon=True)
                self._thread.start()
                # A process that exits (a management command, a worker restarting) first lets the thread
                # finish what it was given, for a bounded time; what remains is the beat job's.
                atexit.register(self.wait_idle, EXIT_WAIT_S)
            self._idle.clear()
            self._queue.put(message_id)

    def wait_idle(self, timeout_s: float) -> bool:
        """True once everything submitted so far was handled (for tests and an orderly shutdown)."""
        return self._idle.wait(timeout_s)

    def _run(self, messages: queue.SimpleQueue[int]) -> None:
        while True:
            # One message at a time, as inline: each is tried (attempts, last_error) even while the broker is down.
            message_id = messages.get()
            try:
                self._publish([message_id])
            except Exception:  # the row stays pending; the beat job sends it
                logger.exception("outbox: background publish failed; the message stays pending")
            finally:
                with self._lock:
                    idle = messages.empty()
                if idle:
                    try:
                        self._on_idle()  # e.g. close the thread's database connection; not within a burst
                    except Exception:
                        logger.exception("outbox: the publisher's idle hook failed")
                    with self._lock:
                        if messages.empty():
                            self._idle.set()
