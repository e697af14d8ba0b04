"""The status line printed every few seconds for each stream: state, rates, faces, drops and a file's progress."""

from __future__ import annotations

from stream.health import StreamHealth

BAR_WIDTH = 20


def status_line(health: StreamHealth, faces: int, frames_done: int, expected_frames: int | None) -> str:
    progress = ""
    if expected_frames:
        done = min(1.0, frames_done / expected_frames)
        filled = round(BAR_WIDTH * done)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        progress = f" [{bar}] {100 * done:.0f}% (frame {frames_done}/{expected_frames})"
    return (
        f"{health.stream_id} [{health.state.value}]: in {health.fps_in:.1f} fps, "
        f"scored {health.fps_scored:.1f} windows/s, {faces} face{'s' if faces != 1 else ''}, "
        f"{health.frames_dropped} dropped{progress}"
    )
