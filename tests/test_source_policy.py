"""The source policy for API-added streams (stream/service/source_policy.py) against a real service in a private
network namespace: files only from inside `service.media_dir` with one refusal whatever the reason (no oracle),
screen and webcams off by default, cameras only on `service.camera_hosts` (a refused host gets no connection), a
too-long path in one line; and the demuxer whitelist and still-image checks of stream/capture that uploads and
API-added files go through."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from model.weights import LoadedModel
from stream.capture.decoding import open_container
from stream.capture.references import CHECKED_FORMATS, SourceError, SourceSpec, parse_source
from stream.capture.sources import Source
from stream.config import ServiceSettings, SourceOptions
from stream.service.source_policy import FILE_REFUSED, Refused, SourcePolicy
from stream.store import open_reader
from tests import media
from tests.netns import private_network
from tests.test_service_api import Served, one_line_problem, serving, wait_for

TOKEN = "policy-token-91c2"
ALLOWED_CAMERA = "127.0.0.2"  # the only camera host of the served detector (all of 127/8 is loopback)


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    with private_network():
        yield


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A media folder with a video, a sub-folder, a text file, a PNG and a link out; a video outside it."""
    root = tmp_path_factory.mktemp("policy")
    media_dir, outside = root / "media", root / "elsewhere"
    (media_dir / "sub").mkdir(parents=True)
    outside.mkdir()
    video = media.write_video(media_dir / "face.mp4", media.render(media.one_face(), 40))
    secret = media.write_video(outside / "secret.mp4", media.render(media.one_face(), 40))
    (media_dir / "notes.mp4").write_text("not a video\n" * 20)
    (media_dir / "photo.mp4").write_bytes(png_bytes())
    (media_dir / "link.mp4").symlink_to(secret)
    return {"media": media_dir, "video": video, "secret": secret}


def png_bytes() -> bytes:
    ok, encoded = cv2.imencode(".png", media.one_face()(0))
    assert ok
    return encoded.tobytes()


@pytest.fixture(scope="module")
def served(
    private_netns: None, seed_model: LoadedModel, engine_cache: Path, places: dict[str, Path]
) -> Iterator[Served]:
    overrides = {
        "sources.open_timeout_s": 2,
        "service.media_dir": str(places["media"]),
        "service.camera_hosts": [ALLOWED_CAMERA],
    }
    db = places["media"].parent / "runs" / "deepfake.db"
    with serving(seed_model, db, engine_cache, overrides, token=TOKEN) as running:
        yield running


# ---- files ---------------------------------------------------------------------------------------------------------
def test_every_file_the_policy_refuses_gets_the_same_403(served: Served, places: dict[str, Path]) -> None:
    media_dir = places["media"]
    refused = [
        "/etc/shadow",  # exists, unreadable by most, outside
        "/etc/hostname",  # exists, readable, not a video, outside
        str(media_dir / "missing.mp4"),  # inside, missing
        str(media_dir / "sub"),  # inside, a folder
        str(media_dir),  # the folder itself
        str(places["secret"]),  # a readable video outside
        "../elsewhere/secret.mp4",  # the same, relative to the media folder
        "link.mp4",  # inside, a symlink pointing out
        str(media_dir / "notes.mp4"),  # inside, not a video
        "photo.mp4",  # inside, a still image named .mp4
        "/no/such/folder/video.mp4",
    ]
    details = set()
    for source in refused:
        response = served.client.post("/api/streams", json={"source": source})
        details.add(one_line_problem(response, 403))
        assert served.client.get("/api/streams").status_code == 200
    assert details == {FILE_REFUSED}  # one text: nothing says what exists, or what it is
    with open_reader(served.detector.settings.store.db) as reader:
        sources = [row.source for row in reader.streams(served.detector.session_id)]
    assert not [s for s in sources if "secret" in s or "shadow" in s or "link" in s], sources


def test_a_video_inside_the_media_folder_is_added_and_scored(served: Served, places: dict[str, Path]) -> None:
    client = served.client
    added = client.post("/api/streams", json={"source": "face.mp4", "name": "inside"})
    assert added.status_code == 202, added.text
    assert added.json()["source"] == "face.mp4" and added.json()["kind"] == "file"

    def ended() -> dict | None:
        stream = client.get("/api/streams/inside").json()
        return stream if stream["state"] == "ended" else None

    assert wait_for(ended, 60, "the file to end")["frames_read"] == 40
    by_path = client.post("/api/streams", json={"source": str(places["video"]), "name": "inside-again"})
    assert by_path.status_code == 202, by_path.text  # an absolute path inside the folder works too
    with open_reader(served.detector.settings.store.db) as reader:
        scored = [f for f in reader.face_summaries(served.detector.session_id) if f.stream_id == "inside"]
    assert scored and scored[0].frames_scored > 0


def test_screen_and_webcams_are_off_unless_the_config_allows_them(served: Served) -> None:
    for source in ("screen", "screen:0,0,64,64", "0", "/dev/video0", "/dev/video97"):
        detail = one_line_problem(served.client.post("/api/streams", json={"source": source}), 403)
        assert "cannot be added through the API" in detail and "service.api_sources" in detail, detail
    policy = served.client.get("/api/sources/policy").json()
    allowed = {k["kind"]: k["allowed"] for k in policy["kinds"]}
    assert allowed == {"rtsp": True, "whip": True, "demo": True, "file": True, "screen": False, "webcam": False}
    assert policy["camera_hosts"] == [ALLOWED_CAMERA] and policy["media_dir"]
    # What the config allows goes on to the source's own checks (here: no camera at that device).
    enabled = SourcePolicy(ServiceSettings(api_sources=("webcam",)))
    with pytest.raises(Refused) as missing:
        enabled.check("/dev/video97")
    assert missing.value.status == 400 and "no camera at /dev/video97" in str(missing.value)


# ---- camera hosts --------------------------------------------------------------------------------------------------
class Listener:
    """A real TCP listener that counts the connections it gets (and answers none of them)."""

    def __init__(self, host: str) -> None:
        self.socket = socket.create_server((host, 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.socket.close()


def test_a_camera_host_outside_camera_hosts_is_refused_without_a_connection(served: Served) -> None:
    refused_host, allowed_host = Listener("127.0.0.1"), Listener(ALLOWED_CAMERA)
    try:
        for url in (f"rtsp://127.0.0.1:{refused_host.port}/cam", f"rtsp://localhost:{refused_host.port}/cam"):
            detail = one_line_problem(served.client.post("/api/streams", json={"source": url}), 403)
            assert "service.camera_hosts" in detail, detail
        assert refused_host.connections == 0  # refused before anything was sent its way
        # An allowed host is tried (this one accepts and never answers RTSP: accepted, then opened elsewhere).
        tried = served.client.post("/api/streams", json={"source": f"rtsp://{ALLOWED_CAMERA}:{allowed_host.port}/"})
        assert tried.status_code == 202, tried.text
        wait_for(lambda: allowed_host.connections >= 1, 30, "the allowed camera host to be tried")
    finally:
        refused_host.close()
        allowed_host.close()
    assert refused_host.connections == 0


# ---- bad input -----------------------------------------------------------------------------------------------------
def test_a_too_long_or_broken_path_is_a_400_in_one_line(served: Served) -> None:
    client = served.client
    for source in ("/" + "a" * 2039, "media/" + "b" * 256 + ".mp4", "face\x00.mp4", "face\n.mp4"):
        detail = one_line_problem(client.post("/api/streams", json={"source": source}), 400)
        assert "too long" in detail or "control characters" in detail, detail
        assert client.get("/healthz").json() == {"ok": True}
    assert client.post("/api/streams", json={"source": "demo", "name": "after-long"}).status_code == 202
    assert client.delete("/api/streams/after-long").status_code == 200
    with pytest.raises(SourceError, match="too long"):  # the CLI says so in one line as well
        parse_source("/" + "a" * 2039)


@pytest.mark.fast
def test_the_policy_takes_files_from_inside_the_media_folder_only(tmp_path: Path) -> None:
    media_dir = tmp_path / "media"
    media_dir.mkdir()
    video = media.write_video(media_dir / "in.mp4", media.render(media.one_face(), 12))
    policy = SourcePolicy(ServiceSettings(media_dir=media_dir))
    spec = policy.check("in.mp4")
    assert (spec.kind, spec.target, spec.display, spec.formats) == ("file", str(video), "in.mp4", CHECKED_FORMATS)
    for outside in ("/etc/passwd", "../media/../../etc/passwd", str(tmp_path)):
        with pytest.raises(Refused) as refused:
            policy.check(outside)
        assert (refused.value.status, str(refused.value)) == (403, FILE_REFUSED)
    with pytest.raises(Refused) as off:
        SourcePolicy(ServiceSettings()).check(str(video))  # no media_dir: no files at all
    assert off.value.status == 403 and "service.media_dir" in str(off.value)


# ---- what a file is, by content ------------------------------------------------------------------------------------
@pytest.mark.fast
def test_the_demuxer_whitelist_stops_a_playlist_before_it_reads_a_local_file(tmp_path: Path) -> None:
    segment = media.write_video(tmp_path / "local.ts", media.render(media.one_face(), 12))
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{segment}\n#EXT-X-ENDLIST\n")
    # Without the whitelist, opening is enough for the HLS reader to read the local file: the stream it reports is
    # the segment's, so checking container.format.name afterwards would come too late.
    with av.open(str(playlist)) as container:
        assert container.format.name == "hls" and container.streams.video[0].codec_context.width == media.WIDTH
    with pytest.raises(av.error.ArgumentError):  # FFmpeg refuses the format before its reader runs
        av.open(str(playlist), options={"format_whitelist": CHECKED_FORMATS})
    # A concat list naming a file beside it (FFmpeg's "safe" mode allows that): refused as a format.
    (tmp_path / "list.txt").write_text("ffconcat version 1.0\nfile 'local.ts'\n")
    spec = SourceSpec("upload", str(tmp_path / "list.txt"), live=False, display="list.txt", formats=CHECKED_FORMATS)
    with pytest.raises(SourceError, match="MP4/MOV, Matroska/WebM, AVI or MPEG-TS"):
        open_container(spec, SourceOptions())
    unchecked = open_container(SourceSpec("file", spec.target, False, "list.txt"), SourceOptions())  # the CLI's
    assert unchecked.format.name == "concat"
    unchecked.close()
    for name, write in (("a.mp4", "mp4"), ("a.mkv", "mkv"), ("a.avi", "avi"), ("a.ts", "ts")):
        path = media.write_video(tmp_path / name, media.render(media.one_face(), 12))
        checked = open_container(
            SourceSpec("upload", str(path), False, write, formats=CHECKED_FORMATS), SourceOptions()
        )
        checked.close()


@pytest.mark.fast
def test_a_still_image_is_refused_by_its_content_whatever_its_name(tmp_path: Path) -> None:
    photo = tmp_path / "holiday.mp4"
    photo.write_bytes(png_bytes())
    one_frame = media.write_video(tmp_path / "one.mp4", [np.ascontiguousarray(media.one_face()(0))])
    for path in (photo, one_frame):
        source = Source("s", parse_source(str(path)))  # the CLI's way: any format, still images refused
        with pytest.raises(SourceError, match=r"is a still image.*still images are not supported") as refused:
            source.open()
        assert "\n" not in str(refused.value)
    assert os.path.exists(photo)  # the CLI never deletes what it was given


def test_api_sources_decides_what_the_api_and_whip_may_add(
    private_netns: None, seed_model: LoadedModel, engine_cache: Path, tmp_path: Path
) -> None:
    """A detector whose config lets the API add only the demo: cameras and WHIP publishers are refused in one line,
    before any connection or SDP is looked at; the policy route and the demo say what is left."""
    overrides = {"service.api_sources": ["demo"]}
    with serving(seed_model, tmp_path / "deepfake.db", engine_cache, overrides, token=TOKEN, full=True) as running:
        client = running.client
        camera = one_line_problem(client.post("/api/streams", json={"source": "rtsp://10.1.2.3/cam"}), 403)
        assert camera.startswith("rtsp sources cannot be added through the API") and "api_sources" in camera
        whip = client.post("/whip/door", content=b"v=0", headers={"Content-Type": "application/sdp"})
        assert whip.status_code == 403 and "service.api_sources" in whip.json()["detail"], whip.text
        kinds = {k["kind"]: k for k in client.get("/api/sources/policy").json()["kinds"]}
        assert [kind for kind, k in kinds.items() if k["allowed"]] == ["demo"]
        assert "leaves out file" in kinds["file"]["reason"]
        assert client.post("/api/streams", json={"source": "demo", "name": "only-demo"}).status_code == 202
