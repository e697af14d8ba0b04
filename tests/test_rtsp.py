"""RTSP sources against a real server: GStreamer's RTSP server (tests/rtsp_server.py, run by the system Python)
on 127.0.0.1 inside a private network namespace (tests/netns.py), read by `stream.sources` through PyAV.

Layer 4 of DESIGN.md: skipped with the reason when the system part is missing, failed instead under CI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data

from stream.capture.references import SourceError, parse_source
from stream.capture.sources import Source
from stream.config import SourceOptions
from stream.records import Frame, StreamState
from tests.netns import RtspServer, private_network, rtsp_server

WIDTH, HEIGHT, FPS, SECONDS = 320, 240, 30, 3
SECRET = "s3cr3t-pw"
USER = "camuser"
# Small delays so reconnection is seen within seconds; a read timeout short enough to notice a dead stream.
FAST = SourceOptions(open_timeout_s=5, read_timeout_s=2, reconnect_initial_s=0.2, reconnect_max_s=1)


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    """Every test here runs in its own network namespace with only loopback."""
    with private_network():
        yield


def astronaut_frame() -> np.ndarray:
    """The picture the test video shows in every frame: the astronaut, BGR, WIDTHxHEIGHT."""
    rgb = cv2.resize(data.astronaut(), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb[:, :, ::-1])


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 s H.264 MP4 (no B-frames, a key frame every second, like a camera) of the still astronaut."""
    path = tmp_path_factory.mktemp("rtsp") / "astronaut.mp4"
    frame = av.VideoFrame.from_ndarray(astronaut_frame(), format="bgr24")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"g": str(FPS), "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for _ in range(FPS * SECONDS):
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def served(private_netns: None, video: Path) -> Iterator[str]:
    """The test video at rtsp://127.0.0.1:PORT/cam (each client gets it from the start)."""
    with rtsp_server(video, path="/cam") as url:
        yield url


@pytest.fixture
def pattern_server(private_netns: None) -> Iterator[RtspServer]:
    """A live test pattern that runs until stopped, for tests that kill, freeze or restart the server."""
    with RtspServer(pattern="ball", path="/cam") as server:
        yield server


@pytest.fixture
def sources() -> Iterator[list[Source]]:
    """Sources a test makes; all are stopped and joined afterwards, also when the test fails."""
    made: list[Source] = []
    yield made
    for source in made:
        source.stop()
    for source in made:
        source.join(10)


def with_credentials(url: str, password: str = SECRET) -> str:
    return url.replace("rtsp://", f"rtsp://{USER}:{password}@", 1)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.005)


def next_frame(source: Source, timeout_s: float = 10.0) -> Frame:
    taken: list[Frame] = []

    def took() -> bool:
        frame = source.buffer.take()
        if frame is not None:
            taken.append(frame)
        return bool(taken)

    wait_for(took, timeout_s, f"a frame from {source.spec.display} (state {source.state}, {source.last_error})")
    return taken[0]


def started(sources: list[Source], url: str, options: SourceOptions = FAST) -> Source:
    source = Source("cam", parse_source(url), options)
    sources.append(source)
    source.open()
    source.start()
    return source


def assert_no_credentials(text: str | None) -> None:
    assert text is not None
    assert SECRET not in text and "wrong-pw" not in text and USER not in text, text


def test_frames_arrive_live_bgr_of_the_served_size(served: str, sources: list[Source]) -> None:
    source = started(sources, served)
    frames = [next_frame(source) for _ in range(5)]
    assert source.state == StreamState.LIVE
    assert source.spec.kind == "rtsp" and source.spec.live
    expected = astronaut_frame().astype(np.int16)
    for frame in frames:
        assert frame.stream_id == "cam"
        assert frame.image_bgr.shape == (HEIGHT, WIDTH, 3) and frame.image_bgr.dtype == np.uint8
    image = frames[-1].image_bgr.astype(np.int16)
    as_sent = float(np.abs(image - expected).mean())
    channels_swapped = float(np.abs(image[:, :, ::-1] - expected).mean())
    assert as_sent < 8, f"decoded frame differs from the served picture by {as_sent:.1f} on average"
    assert channels_swapped > 2 * as_sent, "the frame is RGB, not BGR"
    assert [f.index for f in frames] == sorted({f.index for f in frames})
    source.stop()
    source.join(10)
    assert source.state == StreamState.ENDED


def test_unmounted_path_is_a_one_line_404(served: str) -> None:
    source = Source("cam", parse_source(served.rsplit("/", 1)[0] + "/nothing-here"), FAST)
    with pytest.raises(SourceError) as raised:
        source.open()
    message = str(raised.value)
    assert "404" in message or "not found" in message.lower(), message
    assert "\n" not in message
    assert source.state == StreamState.FAILED and source.last_error == message


def test_refused_port_fails_at_once() -> None:
    source = Source("cam", parse_source("rtsp://127.0.0.1:1/cam"), SourceOptions(open_timeout_s=10))
    began = time.monotonic()
    with pytest.raises(SourceError, match="refused") as raised:
        source.open()
    assert time.monotonic() - began < 2, "a refused connection must fail at once, not after the open timeout"
    assert "\n" not in str(raised.value)


def test_credentials_never_in_display_or_errors(served: str, sources: list[Source]) -> None:
    spec = parse_source(with_credentials(served))
    assert_no_credentials(spec.display)
    assert spec.display.endswith("@" + served.split("://", 1)[1])

    unmounted = with_credentials(served.rsplit("/", 1)[0] + "/nothing-here")
    refused = with_credentials("rtsp://127.0.0.1:1/cam")
    for url in (unmounted, refused):
        source = Source("cam", parse_source(url), FAST)
        with pytest.raises(SourceError) as raised:
            source.open()
        assert_no_credentials(str(raised.value))
        assert_no_credentials(source.last_error)

    with RtspServer(pattern="smpte", auth=f"{USER}:{SECRET}") as guarded:
        assert guarded.url is not None
        source = started(sources, with_credentials(guarded.url))
        assert next_frame(source).image_bgr.shape == (HEIGHT, WIDTH, 3)
        source.stop()
        source.join(10)


def test_rejected_credentials_are_a_401_without_the_password(private_netns: None) -> None:
    with RtspServer(pattern="smpte", auth=f"{USER}:{SECRET}") as guarded:
        assert guarded.url is not None
        source = Source("cam", parse_source(with_credentials(guarded.url, "wrong-pw")), FAST)
        with pytest.raises(SourceError) as raised:
            source.open()
    message = str(raised.value)
    assert "401" in message or "unauthorized" in message.lower() or "credentials" in message.lower(), message
    assert_no_credentials(message)


def test_stalled_stream_error_has_no_credentials(pattern_server: RtspServer, sources: list[Source]) -> None:
    assert pattern_server.url is not None
    options = SourceOptions(open_timeout_s=2, read_timeout_s=1, reconnect_initial_s=0.2, reconnect_max_s=1)
    source = started(sources, with_credentials(pattern_server.url), options)
    next_frame(source)
    pattern_server.freeze()
    try:
        wait_for(lambda: source.state == StreamState.RECONNECTING, 10, "the stalled stream to be noticed")
        assert_no_credentials(source.last_error)
    finally:
        pattern_server.thaw()


def test_silent_server_is_reported_as_not_answering(pattern_server: RtspServer) -> None:
    assert pattern_server.url is not None
    pattern_server.freeze()
    try:
        source = Source("cam", parse_source(pattern_server.url), SourceOptions(open_timeout_s=1.5, read_timeout_s=1))
        began = time.monotonic()
        with pytest.raises(SourceError) as raised:
            source.open()
        assert time.monotonic() - began < 1.5 + 2
    finally:
        pattern_server.thaw()
    assert "did not answer" in str(raised.value), str(raised.value)


def kill_and_wait_reconnecting(server: RtspServer, source: Source, attempts: int) -> None:
    server.kill()
    wait_for(
        lambda: source.state == StreamState.RECONNECTING and source.reconnects >= attempts,
        15,
        f"RECONNECTING with {attempts} reconnect attempts (now {source.state}, {source.reconnects})",
    )


def wait_live_with_new_frames(source: Source, frames: int = 10) -> None:
    wait_for(lambda: source.state == StreamState.LIVE, 15, f"LIVE again (last error: {source.last_error})")
    seen = source.frames_read
    wait_for(lambda: source.frames_read >= seen + frames, 10, f"{frames} frames after reconnecting")


def test_server_killed_mid_stream_then_restarted(pattern_server: RtspServer, sources: list[Source]) -> None:
    assert pattern_server.url is not None
    source = started(sources, with_credentials(pattern_server.url))
    next_frame(source)
    assert source.state == StreamState.LIVE and source.reconnects == 0

    kill_and_wait_reconnecting(pattern_server, source, attempts=2)
    assert source.last_error, "a lost stream says why"
    assert_no_credentials(source.last_error)
    assert "\n" not in source.last_error
    before = source.reconnects
    wait_for(lambda: source.reconnects > before, 5, "a further reconnect attempt while the server is down")

    assert pattern_server.restart() == pattern_server.url
    wait_live_with_new_frames(source)
    assert next_frame(source).image_bgr.shape == (HEIGHT, WIDTH, 3)
    source.stop()
    source.join(10)
    assert source.state == StreamState.ENDED


def test_reconnect_delay_starts_small_again_after_recovering(pattern_server: RtspServer, sources: list[Source]) -> None:
    assert pattern_server.url is not None
    source = started(sources, pattern_server.url)
    next_frame(source)
    kill_and_wait_reconnecting(pattern_server, source, attempts=4)  # delay has grown 0.2 → 0.4 → 0.8 → 1 (max)
    pattern_server.restart()
    wait_live_with_new_frames(source, frames=5)

    lost_at = source.reconnects
    pattern_server.kill()
    wait_for(lambda: source.reconnects > lost_at, 10, "the drop to be noticed")
    noticed = time.monotonic()
    wait_for(lambda: source.reconnects > lost_at + 1, 10, "the first retry")
    first_retry_s = time.monotonic() - noticed
    assert first_retry_s < 0.6, f"first retry after {first_retry_s:.2f} s; reconnect_initial_s is 0.2"


def test_a_camera_that_sends_end_of_stream_is_reconnected(served: str, sources: list[Source]) -> None:
    """A live camera never ends: an EOS (here the served clip running out) is a drop, and it reconnects."""
    source = started(sources, served)
    wait_for(lambda: source.buffer.take() is not None and source.reconnects >= 1, 20, "a reconnect after EOS")
    assert "ended without being stopped" in (source.last_error or "")
    clip_frames = FPS * SECONDS
    wait_for(lambda: source.frames_read > clip_frames + 10, 20, "frames from the second connection")
    assert source.state == StreamState.LIVE
    source.stop()
    source.join(10)
