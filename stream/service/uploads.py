"""Uploads: a video sent to the service is streamed to disk under a size cap, handed to the loop as a stream of kind
`upload` (scored with the time live streams leave free), and followed to its report, also across sessions."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from stream.capture.references import SourceError, SourceSpec
from stream.capture.sources import Source
from stream.config import ServiceSettings
from stream.config.store_location import local_path
from stream.detector import Detector
from stream.records import StreamHealth, StreamState
from stream.service.schemas import ApiError, UploadOut, UploadState
from stream.service.upload_pace import live_streams_running, upload_pace
from stream.store import Report, ScoreReader, StreamRow, build_report, open_reader

MB = 1024 * 1024
IDLE_S = 30.0  # an upload that sends nothing for this long is given up (408)
LOOP_WAIT_S = 10.0  # how long a request waits for the loop to take a new stream (it drains commands every iteration)
FINAL = (StreamState.ENDED, StreamState.TRUNCATED, StreamState.INTERRUPTED, StreamState.FAILED, StreamState.LOST)
SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")
T = TypeVar("T")


@dataclass(frozen=True)
class Upload:
    """One upload of this session: where it was kept, and its source (or why it could not be opened)."""

    upload_id: str
    file_name: str
    path: Path
    size_bytes: int
    source: Source | None
    error: str | None


def clean_name(name: str | None) -> str:
    """A file name safe to show and store: its last path part, plain characters only, at most 100 of them."""
    base = re.sub(r"[^\w.\- ]", "_", Path(name or "").name).strip(" .")[:100]
    return base or "upload"


async def receive(chunks: AsyncIterator[bytes], path: Path, max_bytes: int, idle_s: float = IDLE_S) -> int:
    """Write the body to `path` as it arrives, counting: 413 past `max_bytes`, 408 when it stalls, 507 when it
    cannot be written. An upload refused or broken off leaves no file behind."""
    try:
        out = path.open("xb")
    except OSError as error:
        raise ApiError(507, f"cannot keep the upload at {path}: {error.strerror or error}") from None
    received, finished = 0, False
    iterator = aiter(chunks)
    try:
        with out:
            while True:
                try:
                    chunk = await asyncio.wait_for(anext(iterator), idle_s)
                except StopAsyncIteration:
                    finished = True
                    return received
                except TimeoutError:
                    raise ApiError(408, f"the upload sent nothing for {idle_s:g} s: gave up") from None
                received += len(chunk)
                if received > max_bytes:
                    raise ApiError(413, too_large(max_bytes))
                # Local disk writes of the server's small chunks return at once; not worth a thread hop each.
                out.write(chunk)
    except OSError as error:
        raise ApiError(507, f"cannot keep the upload at {path}: {error.strerror or error}") from None
    finally:
        if not finished or received == 0:
            path.unlink(missing_ok=True)


def too_large(max_bytes: int) -> str:
    return f"the upload is larger than the {round(max_bytes / MB, 2):g} MB an upload may send (service.upload_max_mb)"


async def loop_took(added: Future[None], what: str) -> None:
    """Wait for the loop to take a new stream: 409 when a running stream has its id, 503 once the detector has
    stopped or when the loop did not take it within `LOOP_WAIT_S` (the command is then cancelled: never added)."""
    try:
        await asyncio.wait_for(asyncio.wrap_future(added), LOOP_WAIT_S)
    except TimeoutError:
        raise ApiError(503, f"the detector's loop did not take {what} within {LOOP_WAIT_S:g} s: not added") from None
    except ValueError:
        raise ApiError(409, f"{what} is already running: stop it first, or choose another name") from None
    except RuntimeError as error:
        raise ApiError(503, f"{error}: it takes no new streams") from None


def upload_state(
    stored: StreamHealth | None, snapshot: StreamHealth | None, current: bool, open_error: str | None
) -> tuple[UploadState, str | None]:
    """An upload's state and the reason it failed: from the store once its final health is there (the loop
    publishes its end a moment before it commits it), else from the loop's snapshot while this session runs."""
    if open_error is not None:
        return "failed", open_error
    if stored is not None and stored.state in FINAL:
        if stored.state is StreamState.ENDED:
            return "done", None
        if stored.state is StreamState.INTERRUPTED:
            by = f" by {stored.stop_reason.said}" if stored.stop_reason else ""
            at = f" at {stored.percent_read:.0f}%" if stored.percent_read is not None else ""
            return "failed", f"interrupted{by}{at}: stopped before the end of the upload"
        return "failed", stored.last_error or f"the upload {stored.state.value}"
    if current:
        return ("queued" if snapshot is None else "running"), None
    return "failed", "the detector stopped before this upload was finished"


class Uploads:
    """This session's uploads, and the store's view of every session's. Runs on the service's event loop; the store
    is read on worker threads."""

    def __init__(self, detector: Detector, settings: ServiceSettings) -> None:
        self._detector = detector
        self.directory = settings.upload_dir or local_path(detector.settings.store.db).parent / "uploads"
        self.max_mb = settings.upload_max_mb
        self.max_bytes = int(settings.upload_max_mb * MB)
        self._mine: dict[str, Upload] = {}
        self._reader: ScoreReader | None = None

    async def accept(self, chunks: AsyncIterator[bytes], declared: int | None, file_name: str | None) -> UploadOut:
        """Receive a video (refused at once when its declared length is over the cap) and hand it to the loop."""
        if declared is not None and declared > self.max_bytes:
            raise ApiError(413, too_large(self.max_bytes))
        empty = "the upload is empty: send the video file itself as the request body"
        if declared == 0:
            raise ApiError(400, empty)
        name = clean_name(file_name)
        upload_id = f"upload-{secrets.token_hex(4)}"
        suffix = Path(name).suffix.lower()
        path = self.directory / f"{upload_id}{suffix if SUFFIX.fullmatch(suffix) else ''}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ApiError(507, f"cannot keep uploads in {self.directory}: {error.strerror or error}") from None
        size = await receive(chunks, path, self.max_bytes)
        if size == 0:
            raise ApiError(400, empty)
        spec = SourceSpec("upload", str(path), live=False, display=name)
        try:
            source, added = await asyncio.to_thread(self._detector.add_source, spec, upload_id)
        except SourceError as error:
            path.unlink(missing_ok=True)  # not a video: nothing worth keeping
            self._mine[upload_id] = Upload(upload_id, name, path, size, None, str(error))
        else:
            try:
                await loop_took(added, f"upload {upload_id}")
            except ApiError:
                path.unlink(missing_ok=True)
                raise
            self._mine[upload_id] = Upload(upload_id, name, path, size, source, None)
        return await self.describe(upload_id, with_report=False)

    async def describe(self, upload_id: str, with_report: bool = True) -> UploadOut:
        """One upload (of this session or an earlier one), with its report once it has ended; 404 if unknown."""
        rows = [row for row in await self._read(lambda r: r.streams_of_kind("upload")) if row.stream_id == upload_id]
        mine = self._mine.get(upload_id)
        if mine is None and not rows:
            raise ApiError(404, f"no upload {upload_id!r}: GET /api/uploads lists them")
        session = self._detector.session_id
        row = next((r for r in rows if r.session_id == session), None) if mine else rows[0]
        out = self._out(mine, row)
        if with_report and row is not None and out.state in ("done", "failed"):
            report = await self._read(lambda r: build_report(r, row.session_id, [upload_id]))
            out = out.model_copy(update={"report": report, "status": _status(report)})
        return out

    async def listing(self) -> list[UploadOut]:
        """This session's uploads (newest first), then those the store has from earlier sessions."""
        rows = await self._read(lambda r: r.streams_of_kind("upload"))
        session = self._detector.session_id
        stored = {row.stream_id: row for row in rows if row.session_id == session}
        newest_first = reversed(list(self._mine.values()))
        listed = [self._out(upload, stored.get(upload.upload_id)) for upload in newest_first]
        return listed + [
            self._out(None, row) for row in rows if row.session_id != session or row.stream_id not in self._mine
        ]

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _out(self, mine: Upload | None, row: StreamRow | None) -> UploadOut:
        assert mine is not None or row is not None
        session = self._detector.session_id
        current = mine is not None or (row is not None and row.session_id == session)
        snapshot = None
        if mine is not None:
            snapshot = next((h for h in self._detector.health() if h.stream_id == mine.upload_id), None)
        stored = row.health if row is not None else None
        state, error = upload_state(stored, snapshot, current, mine.error if mine else None)
        if state == "running" and snapshot is not None and snapshot.last_error:
            error = snapshot.last_error
        source = mine.source if mine else None
        done = max((h.frames_read for h in (snapshot, stored) if h is not None), default=0)
        expected = source.expected_frames if source is not None else None
        beside_live = state == "running" and live_streams_running(self._detector)
        pace = upload_pace(snapshot if state == "running" else None, done, expected, beside_live)
        return UploadOut(
            upload_id=mine.upload_id if mine else row.stream_id,  # type: ignore[union-attr]
            session_id=row.session_id if row is not None else session,
            file_name=mine.file_name if mine else row.source,  # type: ignore[union-attr]
            size_bytes=mine.size_bytes if mine else None,
            state=state,
            status=None,
            frames_done=done,
            frames_expected=expected,
            error=error,
            note=pace.note,
            rate_fps=pace.rate_fps,
            eta_s=pace.eta_s,
        )

    async def _read(self, query: Callable[[ScoreReader], T]) -> T:
        """Run a store query on a worker thread (SQLite blocks), with the reader opened on first use."""

        def run() -> T:
            if self._reader is None:
                self._reader = open_reader(self._detector.settings.store.db)
            return query(self._reader)

        return await asyncio.to_thread(run)


def _status(report: Report) -> str | None:
    return report.streams[0].status if report.streams else None
