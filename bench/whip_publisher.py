"""A WHIP publisher in its own process, for bench/service.py: an aiortc peer that sends a video file over WebRTC
to `POST URL/whip/NAME`, looping it at 30 fps for as long as it runs.

Its own process, so that encoding VP8 and packetising in Python share the machine's cores with the detector but not
its interpreter lock, as a publisher on another machine would not. It reports on stdout, one JSON object a line,
with `time.monotonic()` times (the same clock in every process of the machine):
`{"event": "answered", "posted", "answered", "codec", "location"}`, `{"event": "connected", "at"}` (ICE and DTLS
done), `{"event": "first_frame", "at"}` (the first frame handed to the encoder), and at the end
`{"event": "deleted", "status"}`; or `{"event": "error", "detail"}` and exit status 1.
It runs until its stdin closes (or a line arrives), then sends the WHIP DELETE and closes its connection.

Run: `.venv/bin/python bench/whip_publisher.py http://127.0.0.1:PORT/ NAME VIDEO` (inside the same private network
namespace as the service, with a non-loopback interface: aioice leaves loopback out of its candidates).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import av
import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def decode_all(video: Path) -> list[np.ndarray]:
    """Every frame of the video as a yuv420p array, decoded once up front (no decoding while publishing)."""
    with av.open(str(video)) as container:
        return [frame.to_ndarray(format="yuv420p") for frame in container.decode(video=0)]


class LoopingVideo(VideoStreamTrack):
    """The frames over and over, paced at 30 fps by aiortc's own clock (`next_timestamp`), with pts running on.

    (aiortc's MediaPlayer with `loop=True` restarts pts at each loop, and its pacing with it: after the first pass
    it sends as fast as it can.)"""

    def __init__(self, frames: list[np.ndarray]) -> None:
        super().__init__()
        self.frames = frames
        self.sent = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(self.frames[self.sent % len(self.frames)], format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        if self.sent == 0:
            emit("first_frame", at=time.monotonic())
        self.sent += 1
        return frame


def video_codec(sdp: str) -> str:
    """The first codec of the answer's video section (the one the publisher sends)."""
    in_video = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("a=rtpmap:"):
            return line.split(" ", 1)[1].split("/", 1)[0]
    return "?"


async def publish(base: str, name: str, video: Path) -> int:
    track = LoopingVideo(decode_all(video))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(track, direction="sendonly")

    @pc.on("connectionstatechange")
    def changed() -> None:
        if pc.connectionState == "connected":
            emit("connected", at=time.monotonic())

    try:
        await pc.setLocalDescription(await pc.createOffer())  # gathers its candidates: no trickle ICE in WHIP
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            posted = time.monotonic()
            answer = await client.post(
                f"/whip/{name}", content=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}
            )
            answered = time.monotonic()
            if answer.status_code != 201:
                emit("error", detail=f"POST /whip/{name} answered {answer.status_code}: {answer.text.strip()[:200]}")
                return 1
            location = answer.headers["location"]
            emit("answered", posted=posted, answered=answered, codec=video_codec(answer.text), location=location)
            await pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # until told to stop
            deleted = await client.delete(location)
            emit("deleted", status=deleted.status_code)
        return 0
    except (httpx.HTTPError, OSError, ValueError) as error:
        emit("error", detail=f"{type(error).__name__}: {error}")
        return 1
    finally:
        await pc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the service's base URL, e.g. http://127.0.0.1:8080/")
    parser.add_argument("name", help="the stream name to publish as (1-64 of A-Z a-z 0-9 _ . -)")
    parser.add_argument("video", type=Path, help="a video file to send, looped")
    args = parser.parse_args()
    if not args.video.is_file():
        parser.error(f"no such video file: {args.video}")
    sys.exit(asyncio.run(publish(args.url, args.name, args.video)))


if __name__ == "__main__":
    main()
