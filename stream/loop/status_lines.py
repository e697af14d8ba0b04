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
) -> str:
    """`settings`: the overload banner's share and window (the defaults when None)."""
    progress = ""
    if expected_frames:
        done = min(1.0, frames_done / expected_frames)
        filled = round(BAR_WIDTH * done)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        progress = f" [{bar}] {100 * done:.0f}% (frame {frames_done}/{expected_frames})"
    return (
        f"{health.stream_id} [{source_label(health.state, kind, live)}]: in {health.fps_in:.1f} fps, "
        f"scored {windows_rate(health.fps_scored, faces)}, {health.frames_dropped} dropped"
        f"{overload_text(health)}{overload_banner(health, settings or LoopSettings())}{progress}"
    )


def windows_rate(fps_scored: float, faces: int) -> str:
    """`14.0 windows/s per face (2 faces)`: the stream's window scores a second shared by the faces in view now, so it
    reads beside the frames in (`fps_scored` counts every face's scores together)."""
    if faces < 1:
        return f"{fps_scored:.1f} windows/s (no face now)"
    return f"{fps_scored / faces:.1f} windows/s per face ({faces} face{'s' if faces != 1 else ''})"


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
