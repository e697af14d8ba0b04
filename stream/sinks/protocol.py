"""The Sink protocol, and the fan-out that hands each loop iteration's events to every sink, each one isolated."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

from stream.records import Event

log = logging.getLogger("deepfake_stream")


class Sink(Protocol):
    """Receives one loop iteration's events, in the order they happened. A sink with `critical = True` (the
    store) ends the run when it fails; any other sink's failure is logged and counted, and the rest go on."""

    def send(self, events: Sequence[Event]) -> None: ...

    def close(self) -> None: ...


def sink_name(sink: Sink) -> str:
    return type(sink).__name__


class SinkFanout:
    """Every sink gets every iteration's events, in order. A failing non-critical sink (log, metrics, webhooks)
    cannot stop the loop or starve the others: its error is logged once per (sink, kind of error) and counted
    (`errors`, and `on_error` for a metric); a critical sink's error propagates, as the store's must."""

    def __init__(self, sinks: Sequence[Sink], on_error: Callable[[str, str], None] | None = None) -> None:
        self.sinks = list(sinks)
        self.errors: Counter[tuple[str, str]] = Counter()  # (sink, error type) -> times it failed
        self._on_error = on_error

    def send(self, events: Sequence[Event]) -> None:
        for sink in self.sinks:
            self._guarded(sink, lambda s=sink: s.send(events))

    def close(self) -> None:
        for sink in self.sinks:
            self._guarded(sink, sink.close)

    def _guarded(self, sink: Sink, call: Callable[[], None]) -> None:
        if getattr(sink, "critical", False):
            call()
            return
        try:
            call()
        except Exception as error:
            key = (sink_name(sink), type(error).__name__)
            if not self.errors[key]:
                log.error("sink %s failed (%s: %s); it is skipped for that batch, the others go on", *key, error)
            self.errors[key] += 1
            if self._on_error is not None:
                self._on_error(*key)
