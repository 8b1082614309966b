"""Background work owned by an object: one asyncio task started once, cancelled and awaited on stop;
blocking work in a daemon thread that a stopping process does not wait for."""

from __future__ import annotations

import asyncio
import threading


class TaskOwner:
    """Mixin: :meth:`start` runs ``self.run()`` as a task (once); :meth:`stop_task` cancels and awaits it."""

    _task: asyncio.Task | None = None

    def start(self) -> asyncio.Task:
        """Run :meth:`run` as a task on the current event loop (again only after it ended)."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self.run())
        return self._task

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called and :meth:`stop_task` not since."""
        return self._task is not None

    async def stop_task(self) -> None:
        """Cancel the task and wait for it to end. Its error or its own cancellation is not raised here; a
        cancellation of the caller is (a stop's ``asyncio.wait_for`` timing out), so a task slow to end cannot hold
        its caller past the caller's deadline (``except CancelledError`` around the await swallowed both alike)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        await self.stop_task()

    async def run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def in_daemon_thread(fn, *args, name: str = "flowlens-worker") -> asyncio.Future:
    """Run ``fn(*args)`` in a new daemon thread; await the returned future for its result or error.

    Unlike :func:`asyncio.to_thread`, whose pool threads the interpreter joins at exit, a
    process stopping (Ctrl-C) does not wait for this thread: cancel the awaiting task and
    leave. Use it for long, stateless work only (a warm-up that compiles and caches).
    """
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def settle(ok: bool, value) -> None:
        if not fut.done():
            fut.set_result(value) if ok else fut.set_exception(value)

    def target() -> None:
        try:
            value, ok = fn(*args), True
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
            value, ok = e, False
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop closed meanwhile: nobody waits any more
            pass

    threading.Thread(target=target, name=name, daemon=True).start()
    return fut
