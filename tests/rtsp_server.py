"""A small RTSP server for tests: one H.264 stream on 127.0.0.1, from a video file or a GStreamer test pattern.

Run by the SYSTEM Python (it needs GObject introspection and GstRtspServer, which the project's venv does not
have): Debian `gir1.2-gst-rtsp-server-1.0` and `python3-gi`.

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --path /cam --video clip.mp4
    /usr/bin/python3 tests/rtsp_server.py --port 0 --path /cam --pattern ball --size 320x240 --fps 30

`--video` serves an H.264 MP4 as it is (demuxed and payloaded, not re-encoded), once per client, paced to its
own timestamps: each client that connects gets its own pipeline from the start of the file, and at the end of
the file the server says goodbye (RTCP BYE), which FFmpeg reads as the end of the stream. `--pattern` serves a
live `videotestsrc` encoded with `openh264enc` until the server stops. `--port 0` lets the system pick a
port. When it listens, it prints one line `READY rtsp://127.0.0.1:PORT/PATH` on stdout. Any other path is
answered 404 Not Found. `--auth USER:PASSWORD` makes it ask for Basic credentials (401 without the right
ones). SIGTERM or SIGINT stop it cleanly (exit status 0).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

HOST = "127.0.0.1"


def quoted(value: str) -> str:
    """A value for a gst-launch description, in double quotes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def launch_line(args: argparse.Namespace) -> str:
    # config-interval=0: parameter sets go in the SDP only. With -1, GStreamer 1.22's rtph264pay puts SPS/PPS
    # before every IDR *slice*, and FFmpeg then splits a multi-slice key frame (x264's default) into two
    # frames, the second one missing its top half.
    payloader = "rtph264pay name=pay0 pt=96 config-interval=0"
    if args.video is not None:
        return f"( filesrc location={quoted(str(args.video))} ! qtdemux ! h264parse ! {payloader} )"
    width, height = args.size
    caps = f"video/x-raw,format=I420,width={width},height={height},framerate={args.fps}/1"
    encoder = f"openh264enc gop-size={args.fps} complexity=low rate-control=off"
    return f"( videotestsrc is-live=true pattern={args.pattern} ! {caps} ! {encoder} ! h264parse ! {payloader} )"


def size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}")
    return int(width), int(height)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8554, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--path", default="/cam", help="the mount path of the one stream")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", type=Path, help="an MP4 file with an H.264 video track, served once per client")
    source.add_argument("--pattern", help="a videotestsrc pattern (smpte, ball, ...), served live")
    parser.add_argument("--size", type=size, default=(320, 240), help="pattern size, WIDTHxHEIGHT")
    parser.add_argument("--fps", type=int, default=30, help="pattern frame rate")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="require these credentials (Basic), else 401")
    args = parser.parse_args(argv)
    if not args.path.startswith("/"):
        parser.error("--path must start with /")
    if args.auth is not None and ":" not in args.auth:
        parser.error("--auth must be USER:PASSWORD")
    if args.video is not None and not args.video.is_file():
        parser.error(f"no such file: {args.video}")
    return args


def require_credentials(server: GstRtspServer.RTSPServer, factory: GstRtspServer.RTSPMediaFactory, auth: str) -> None:
    """Clients must send `auth` (user:password) with Basic authentication; others are answered 401."""
    user, _, password = auth.partition(":")
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "user")
    checker = GstRtspServer.RTSPAuth()
    checker.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(checker)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role("user")
    permissions.add_permission_for_role("user", "media.factory.access", True)
    permissions.add_permission_for_role("user", "media.factory.construct", True)
    factory.set_permissions(permissions)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    Gst.init(None)
    loop = GLib.MainLoop()

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    factory.set_shared(False)  # every client gets its own pipeline, from the start

    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(args.port))
    if args.auth is not None:
        require_credentials(server, factory, args.auth)
    server.get_mount_points().add_factory(args.path, factory)
    try:
        source_id = server.attach(None)
    except GLib.Error as error:
        print(f"cannot listen on {HOST}:{args.port}: {error.message}", file=sys.stderr)
        return 1
    if not source_id:
        print(f"cannot listen on {HOST}:{args.port}", file=sys.stderr)
        return 1

    def stop() -> bool:
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, stop)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, stop)
    print(f"READY rtsp://{HOST}:{server.get_bound_port()}{args.path}", flush=True)
    loop.run()
    GLib.source_remove(source_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
