"""The status lines printed every few seconds: the encoder's (its engine, what `auto` measured for it and what one
crop costs now), and one for each stream: what it is (a file, or a live source's state), frames in and windows scored
per face, drops (frames thinned and crops skipped, and an "overloaded" banner only while they are a large share lately)
and a file's progress."""

from __future__ import annotations

from stream.config import LoopSettings
from stream.records import StreamHealth, StreamState

BAR_WIDTH = 20


def source_label(state: StreamState, kind: str, live: bool) -> str:
    """A live source shows its state (`live`, `reconnecting`, …); anything else shows its kind (`file`), and its
    state only when that is news (`file, truncated`): a file being read is not a live stream."""
    if live:
        return state.value
    if state in (StreamState.STARTING, StreamState.LIVE, StreamState.ENDED):
        return kind
    return f"{kind}, {state.value}"


def status_line(
    health: StreamHealth,
    kind: str,
    live: bool,
    faces: int,
    frames_done: int,
    expected_frames: int | None,
    settings: LoopSettings | None = None,
    faces_scored: int | None = None,
) -> str:
    """`settings`: the overload banner's share and window (the defaults when None); `faces_scored`: the faces with a
    window score over the scored rate's seconds (`windows_rate`)."""
    progress = ""
    if expected_frames:
        done = min(1.0, frames_done / expected_frames)
        filled = round(BAR_WIDTH * done)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        progress = f" [{bar}] {100 * done:.0f}% (frame {frames_done}/{expected_frames})"
    return (
        f"{health.stream_id} [{source_label(health.state, kind, live)}]: in {health.fps_in:.1f} fps, "
        f"scored {windows_rate(health.fps_scored, faces, faces_scored)}, {health.frames_dropped} dropped"
        f"{overload_text(health)}{overload_banner(health, settings or LoopSettings())}{progress}"
    )


def windows_rate(fps_scored: float, faces: int, faces_scored: int | None = None) -> str:
    """`14.0 windows/s per face (2 faces)`: the stream's window scores a second shared by the faces that were scored
    over the same seconds (`faces_scored`; else the faces in view now), so it reads beside the frames in
    (`fps_scored` counts every face's scores together; right after a face leaves, the faces in view now would
    overstate each one's rate)."""
    shared_by = faces_scored if faces_scored else faces
    if shared_by < 1:
        return f"{fps_scored:.1f} windows/s (no face now)"
    return f"{fps_scored / shared_by:.1f} windows/s per face ({shared_by} face{'s' if shared_by != 1 else ''})"


def overload_text(health: StreamHealth) -> str:
    """`, 30 thinned, crops skipped 45%`: what the loop left out so far, counted as drops are; nothing while it kept
    up."""
    text = f", {health.frames_thinned} thinned" if health.frames_thinned else ""
    if health.crops_skipped:
        share = 100 * health.crops_skipped / (health.crops_skipped + health.crops_encoded)
        text += f", crops skipped {share:.0f}%"
    return text


def overload_banner(health: StreamHealth, settings: LoopSettings) -> str:
    """`; overloaded: 34% of frames thinned or crops skipped in the last 10 s`, only past `pipeline.overload_share`."""
    if health.overload_share <= settings.overload_share:
        return ""
    return (
        f"; overloaded: {100 * health.overload_share:.0f}% of frames thinned or crops skipped in the last "
        f"{settings.overload_window_s:g} s"
    )


def engine_line(engine: str, measured_crops_per_s: float | None, seconds_per_crop_now: float | None) -> str:
    """`encoder openvino-int8 (auto: 295 crops/s measured): 1 crop costs 4.1 ms now`."""
    chosen = f" (auto: {measured_crops_per_s:.0f} crops/s measured)" if measured_crops_per_s else ""
    now = f": one crop costs {1000 * seconds_per_crop_now:.1f} ms now" if seconds_per_crop_now else ""
    return f"encoder {engine}{chosen}{now}"


ENCODER_CHANGE = 1.5  # the encoder line is printed again once a crop costs this factor more (or less) than it said


class StatusPrinter:
    """What the periodic status prints: each stream's line every interval; the threshold's once (it is fixed for
    the run) and the encoder's when it changes (first with no cost yet, then once a crop's cost moved by a factor of
    ENCODER_CHANGE from the one it last said), so a steady run prints one line per stream."""

    def __init__(self, engine: str, measured_crops_per_s: float | None, threshold: str) -> None:
        self._engine, self._measured = engine, measured_crops_per_s
        self._threshold: str | None = threshold  # None once printed
        self._engine_printed = False
        self._cost_printed: float | None = None

    def lines(self, streams: list[str], seconds_per_crop_now: float | None) -> list[str]:
        """The lines to print now, given every stream's status line and what one crop costs now."""
        due = []
        if self._encoder_changed(seconds_per_crop_now):
            due.append(engine_line(self._engine, self._measured, seconds_per_crop_now))
            self._engine_printed = True
            self._cost_printed = seconds_per_crop_now or self._cost_printed
        if self._threshold is not None:
            due.append(self._threshold)
            self._threshold = None
        return [*due, *streams]

    def _encoder_changed(self, cost: float | None) -> bool:
        if not self._engine_printed:
            return True
        if not cost:
            return False
        if not self._cost_printed:
            return True
        return max(cost, self._cost_printed) / min(cost, self._cost_printed) >= ENCODER_CHANGE
