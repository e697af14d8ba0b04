"""Run-time control of the loop: commands other threads post and the loop drains at the top of each iteration."""

from __future__ import annotations

import queue
from concurrent.futures import Future
from dataclasses import dataclass, field

from stream.capture.sources import Source
from stream.records import StopReason


@dataclass(frozen=True)
class AddSource:
    """Register an opened source and start its capture thread; `done` fails when its stream id is taken."""

    source: Source
    done: Future[None] = field(default_factory=Future, compare=False)


@dataclass(frozen=True)
class RemoveSource:
    """Stop a stream, mark its faces gone and write its final health; `done` fails when there is no such stream.
    A file or upload not yet at its end is then interrupted, by `reason`."""

    stream_id: str
    done: Future[None] = field(default_factory=Future, compare=False)
    reason: StopReason = StopReason.API


@dataclass(frozen=True)
class Stop:
    """End the loop after this iteration: files and uploads not yet at their end are interrupted, by `reason` (a
    person's Ctrl-C, SIGTERM, or the run ending them)."""

    reason: StopReason = StopReason.RUN_ENDED


Command = AddSource | RemoveSource | Stop


class Inbox:
    """An unbounded queue only because commands are few and tiny (a person or an API adds cameras)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()

    def post(self, command: Command) -> None:
        self._queue.put(command)

    def drain(self) -> list[Command]:
        commands = []
        while True:
            try:
                commands.append(self._queue.get_nowait())
            except queue.Empty:
                return commands


def answer(done: Future[None], error: BaseException | None = None) -> None:
    """Answer a command's future, unless whoever posted it gave up on it: a future cancelled by the caller (an
    HTTP request that timed out, `asyncio.wrap_future` cancelled) must not take the loop down with it."""
    if not done.set_running_or_notify_cancel():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
