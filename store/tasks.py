"""One background asyncio task owned by an object: started once, cancelled and awaited on stop."""

from __future__ import annotations

import asyncio


class TaskOwner:
    """Mixin: :meth:`start` runs ``self.run()`` as a task (once); :meth:`stop_task` cancels and awaits it."""

    _task: asyncio.Task | None = None

    def start(self) -> asyncio.Task:
        """Run :meth:`run` as a task on the current event loop (again only after it ended)."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self.run())
        return self._task

    async def stop_task(self) -> None:
        """Cancel the task and wait for it to end (its errors are not raised here)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def stop(self) -> None:
        await self.stop_task()

    async def run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError
