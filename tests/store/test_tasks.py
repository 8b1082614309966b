"""A stop bounded by ``asyncio.wait_for`` really ends at its deadline, however slowly its tasks end."""

from __future__ import annotations

import asyncio

import pytest

from store.tasks import TaskOwner


class Stubborn(TaskOwner):
    """A task that, once cancelled, ends only when :attr:`release` is set (a stop step that hangs)."""

    def __init__(self):
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def run(self):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            await self.release.wait()
            raise


async def test_a_stop_timing_out_raises_timeout_instead_of_waiting_for_a_task_slow_to_end():
    s = Stubborn()
    s.start()
    await asyncio.sleep(0)  # the task runs up to its first await
    with pytest.raises(TimeoutError):
        # before: stop_task swallowed the caller's cancellation with the task's, and returned when the task ended
        await asyncio.wait_for(s.stop_task(), 0.2)
    assert s.cancelled.is_set() and not s.started
    s.release.set()


async def test_a_task_that_failed_or_was_cancelled_is_stopped_quietly():
    class Failing(TaskOwner):
        async def run(self):
            raise ValueError("its own error")

    f = Failing()
    task = f.start()
    await asyncio.gather(task, return_exceptions=True)
    await f.stop_task()  # its error is its own: not raised here
    s = Stubborn()
    s.start()
    await asyncio.sleep(0)
    s.release.set()
    await asyncio.wait_for(s.stop_task(), 5)  # its cancellation ends it: stop_task returns
    assert s.cancelled.is_set()
