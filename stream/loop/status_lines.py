"""The status lines printed every few seconds: the encoder's (its engine, what `auto` measured for it and what one
crop costs now), and one for each stream: what it is (a file, or a live source's state), rates, faces, drops (and,
under overload, frames thinned and crops skipped) and a file's progress."""

from __future__ import annotations

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
    health: StreamHealth, kind: str, live: bool, faces: int, frames_done: int, expected_frames: int | None
) -> str:
    progress = ""
    if expected_frames:
        done = min(1.0, frames_done / expected_frames)
        filled = round(BAR_WIDTH * done)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        progress = f" [{bar}] {100 * done:.0f}% (frame {frames_done}/{expected_frames})"
    return (
        f"{health.stream_id} [{source_label(health.state, kind, live)}]: in {health.fps_in:.1f} fps, "
        f"scored {health.fps_scored:.1f} windows/s, {faces} face{'s' if faces != 1 else ''}, "
        f"{health.frames_dropped} dropped{overload_text(health)}{progress}"
    )


def overload_text(health: StreamHealth) -> str:
    """`, 30 thinned, crops skipped 45%` while the loop is sharing itself out; nothing while it keeps up."""
    text = f", {health.frames_thinned} thinned" if health.frames_thinned else ""
    if health.crops_skipped:
        share = 100 * health.crops_skipped / (health.crops_skipped + health.crops_encoded)
        text += f", crops skipped {share:.0f}%"
    return text


def engine_line(engine: str, measured_crops_per_s: float | None, seconds_per_crop_now: float | None) -> str:
    """`encoder openvino-int8 (auto: 295 crops/s measured): 1 crop costs 4.1 ms now`."""
    chosen = f" (auto: {measured_crops_per_s:.0f} crops/s measured)" if measured_crops_per_s else ""
    now = f": one crop costs {1000 * seconds_per_crop_now:.1f} ms now" if seconds_per_crop_now else ""
    return f"encoder {engine}{chosen}{now}"
