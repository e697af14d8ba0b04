"""The X display a screen source captures, opened through libX11 with ctypes (no PyAV, no xdpyinfo) to check a
region against the display's size before any work starts."""

from __future__ import annotations

import ctypes
import ctypes.util

from stream.capture.references import SourceError, SourceSpec


def _libx11() -> ctypes.CDLL | None:
    """libX11, or None where it is not installed (then FFmpeg's x11grab says what is wrong when it opens)."""
    for name in ("libX11.so.6", ctypes.util.find_library("X11")):
        if name:
            try:
                x11 = ctypes.CDLL(name)
            except OSError:
                continue
            x11.XOpenDisplay.restype = ctypes.c_void_p
            x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
            for function in ("XDefaultScreen", "XCloseDisplay"):
                getattr(x11, function).argtypes = [ctypes.c_void_p]
            for function in ("XDisplayWidth", "XDisplayHeight"):
                getattr(x11, function).argtypes = [ctypes.c_void_p, ctypes.c_int]
            return x11
    return None


def display_size(display: str) -> tuple[int, int] | None:
    """(width, height) of `display`'s screen in pixels; None when libX11 is missing; SourceError when the display
    cannot be opened."""
    x11 = _libx11()
    if x11 is None:
        return None
    handle = x11.XOpenDisplay(display.encode())
    if not handle:
        raise SourceError(f"cannot open the X display {display}: is it running, and may this user use it?")
    try:
        screen = x11.XDefaultScreen(handle)
        return int(x11.XDisplayWidth(handle, screen)), int(x11.XDisplayHeight(handle, screen))
    finally:
        x11.XCloseDisplay(handle)


def outside_display(spec: SourceSpec, size: tuple[int, int]) -> str | None:
    """Why `spec`'s region does not fit a display of `size`, in one line; None when it fits."""
    if spec.region is None:
        return None
    x, y, w, h = spec.region
    width, height = size
    if x + w <= width and y + h <= height:
        return None
    return (
        f"cannot capture {spec.display}: a region must lie inside the X display, which is {width}x{height} "
        f"(the whole of it: screen:0,0,{width},{height})"
    )


def check_screen(spec: SourceSpec) -> None:
    """SourceError (one line) when the X display of a screen source cannot be opened or its region does not fit."""
    if spec.kind != "screen":
        return
    size = display_size(display_of(spec))
    problem = outside_display(spec, size) if size else None
    if problem:
        raise SourceError(problem)


def display_of(spec: SourceSpec) -> str:
    """The X display a screen source names (`:0`, `host:1.0`): its target without the region's offset."""
    return spec.target.partition("+")[0]
