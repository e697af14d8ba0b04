"""Uploads: a video sent to the service is streamed to disk under a size cap and a minimum rate, queued, handed to the
loop as a stream of kind `upload` when fewer than `service.max_uploads_running` run (scored with the time live streams
leave free), and followed to its report, also across sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from starlette.requests import ClientDisconnect

from stream.capture.references import CHECKED_FORMATS, SourceError, SourceSpec
from stream.capture.sources import Source
from stream.config import ServiceSettings
from stream.config.store_location import local_path
from stream.detector import Detector
from stream.records import StreamHealth, StreamState
from stream.service.caps import over_cap
from stream.service.schemas import ApiError, UploadOut, UploadState
from stream.service.upload_files import UploadFiles
from stream.service.upload_pace import live_streams_running, upload_pace
from stream.store import Report, ScoreReader, StreamRow, build_report, open_reader
from stream.store.private_files import make_private_folder, open_private

log = logging.getLogger("deepfake_stream")
MB = 1024 * 1024
IDLE_S = 30.0  # an upload that sends nothing for this long is given up (408)
LOOP_WAIT_S = 10.0  # how long a request waits for the loop to take a new stream (it drains commands every iteration)
FINAL = (StreamState.ENDED, StreamState.TRUNCATED, StreamState.INTERRUPTED, StreamState.FAILED, StreamState.LOST)
PUMP_S = 0.25  # how often the queue looks for a finished upload to start the next one
T = TypeVar("T")


@dataclass(frozen=True)
class Upload:
    """One upload of this session: where it was kept, and its source (or why it could not be opened)."""

    upload_id: str
    file_name: str
    path: Path
    size_bytes: int
    source: Source | None  # None while queued, or when it could not be opened
    error: str | None


@dataclass(frozen=True)
class Pace:
    """How slowly an upload may arrive: below `min_bytes_per_s` on average once `grace_s` have passed, or still
    arriving after `deadline_s`, it is cut off (408)."""

    min_bytes_per_s: float
    grace_s: float
    deadline_s: float

    @classmethod
    def of(cls, settings: ServiceSettings) -> Pace:
        return cls(settings.upload_min_kbps * 1000 / 8, settings.upload_grace_s, settings.upload_deadline_s)

    def check(self, received: int, elapsed_s: float) -> None:
        if elapsed_s > self.deadline_s:
            raise ApiError(408, f"the upload took over {self.deadline_s:g} s (service.upload_deadline_s): cut off")
        if elapsed_s > self.grace_s and received < self.min_bytes_per_s * elapsed_s:
            rate = 8 * received / elapsed_s / 1000
            minimum = 8 * self.min_bytes_per_s / 1000
            raise ApiError(
                408, f"the upload arrived at {rate:.2g} kbit/s, under {minimum:g} (service.upload_min_kbps): cut off"
            )


NO_PACE = Pace(0.0, 0.0, float("inf"))


def clean_name(name: str | None) -> str:
    """A file name safe to show and store: its last path part, plain characters only, at most 100 of them."""
    base = re.sub(r"[^\w.\- ]", "_", Path(name or "").name).strip(" .")[:100]
    return base or "upload"


async def receive(
    chunks: AsyncIterator[bytes], path: Path, max_bytes: int, idle_s: float = IDLE_S, pace: Pace = NO_PACE
) -> int:
    """Write the body to `path` as it arrives, counting: 413 past `max_bytes`, 408 when it stalls or arrives slower
    than `pace` allows, 507 when it cannot be written. An upload refused or broken off leaves no file behind."""
    try:
        out = open_private(path)  # 0600: an upload is someone's video
    except OSError as error:
        raise ApiError(507, f"cannot keep the upload at {path}: {error.strerror or error}") from None
    received, finished = 0, False
    iterator = aiter(chunks)
    started = time.monotonic()
    try:
        with out:
            while True:
                wait_s = min(idle_s, max(0.0, pace.deadline_s - (time.monotonic() - started)))
                try:
                    chunk = await asyncio.wait_for(anext(iterator), wait_s)
                except StopAsyncIteration:
                    finished = True
                    return received
                except TimeoutError:
                    pace.check(received, time.monotonic() - started)
                    raise ApiError(408, f"the upload sent nothing for {idle_s:g} s: gave up") from None
                except ClientDisconnect:  # nobody to answer; the partial file goes
                    raise ApiError(400, "the client went away before the end of the upload") from None
                received += len(chunk)
                pace.check(received, time.monotonic() - started)
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
        self._pace = Pace.of(settings)
        self._max_running = settings.max_uploads_running
        self._queue_cap = settings.upload_queue
        self._mine: dict[str, Upload] = {}
        self._reader: ScoreReader | None = None
        retention = settings.upload_retention_days or detector.settings.store.retention_days
        self.files = UploadFiles(self.directory, retention, settings.upload_quota_mb)
        self.files.prune()  # at start: what earlier runs left past the retention or the quota
        self._receiving = 0  # uploads whose body is arriving
        self._queue: list[str] = []  # received, waiting for a turn (first: the next)
        self._running: set[str] = set()  # handed to the loop and not ended yet
        # Opening a file for the loop: a pool of its own, never asyncio's default one (shared with the store reads).
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="upload-open")
        self._pump: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start taking queued uploads as earlier ones end (on the service's event loop)."""
        self._pump = asyncio.get_running_loop().create_task(self._take_turns())

    async def aclose(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.close()

    async def accept(self, chunks: AsyncIterator[bytes], declared: int | None, file_name: str | None) -> UploadOut:
        """Receive a video (refused at once when its declared length is over the cap) and hand it to the loop."""
        if declared is not None and declared > self.max_bytes:
            raise ApiError(413, too_large(self.max_bytes))
        empty = "the upload is empty: send the video file itself as the request body"
        if declared == 0:
            raise ApiError(400, empty)
        if self._receiving + len(self._queue) + len(self._running) >= self._max_running + self._queue_cap:
            what = f"{self._max_running} upload(s) run and the upload queue is full"
            raise over_cap("upload_queue", self._queue_cap, what, 60)
        name = clean_name(file_name)
        upload_id = f"upload-{secrets.token_hex(4)}"
        path = self.files.path_for(upload_id)  # a fixed suffix: the client's name is only shown
        try:
            make_private_folder(self.directory)
        except OSError as error:
            raise ApiError(507, f"cannot keep uploads in {self.directory}: {error.strerror or error}") from None
        self._receiving += 1
        try:
            size = await receive(chunks, path, self.max_bytes, pace=self._pace)
        finally:
            self._receiving -= 1
        if size == 0:
            raise ApiError(400, empty)
        self._mine[upload_id] = Upload(upload_id, name, path, size, None, None)
        self._queue.append(upload_id)
        await self._next_turns()  # at once when none runs
        await asyncio.to_thread(self.files.prune, self.in_use())
        return await self.describe(upload_id, with_report=False)

    def in_use(self) -> set[Path]:
        """The files of this session's uploads still queued or being scored (never pruned)."""
        return {u.path for u in self._mine.values() if u.error is None and not (u.source and u.source.finished)}

    async def _take_turns(self) -> None:
        while True:
            await asyncio.sleep(PUMP_S)
            try:
                await self._next_turns()
            except Exception as error:  # never let the queue stop: one upload failing to start is its own failure
                log_failure(error)

    async def _next_turns(self) -> None:
        """Forget the uploads that ended, and start queued ones while fewer than `max_uploads_running` run."""
        health = {h.stream_id: h for h in self._detector.health()}
        self._running = {uid for uid in self._running if _still_running(self._mine[uid], health.get(uid))}
        while self._queue and len(self._running) < self._max_running:
            upload_id = self._queue.pop(0)
            self._running.add(upload_id)
            await self._start(upload_id)

    async def _start(self, upload_id: str) -> None:
        """Hand a received upload to the loop; one that cannot be opened or taken is failed with the reason."""
        upload = self._mine[upload_id]
        spec = SourceSpec("upload", str(upload.path), live=False, display=upload.file_name, formats=CHECKED_FORMATS)
        loop = asyncio.get_running_loop()
        try:
            source, added = await loop.run_in_executor(self._pool, self._detector.add_source, spec, upload_id)
        except SourceError as error:
            upload.path.unlink(missing_ok=True)  # not a video: nothing worth keeping
            self._mine[upload_id] = replace(upload, error=str(error))
            self._running.discard(upload_id)
            return
        self._mine[upload_id] = replace(upload, source=source)
        try:
            await loop_took(added, f"upload {upload_id}")
        except ApiError as error:
            upload.path.unlink(missing_ok=True)
            self._mine[upload_id] = replace(upload, error=str(error))
            self._running.discard(upload_id)

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
        position = self._queue.index(mine.upload_id) + 1 if mine and mine.upload_id in self._queue else None
        if state == "queued" and mine is not None and mine.source is not None:
            state = "running"  # handed to the loop, which has not published it yet
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
            queue_position=position,
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


def _still_running(upload: Upload, snapshot: StreamHealth | None) -> bool:
    """An upload taken from the queue runs while it is being opened, then until its final health is published (or,
    once that has been pruned, its source has ended or was stopped); one that could not be opened does not."""
    source = upload.source
    if source is None:
        return upload.error is None  # still being opened
    if snapshot is not None:
        return snapshot.state not in FINAL
    return not (source.finished or source.stopping or source.state in FINAL)


def log_failure(error: Exception) -> None:
    log.error("uploads: starting a queued upload failed: %s: %s", type(error).__name__, error)


def _status(report: Report) -> str | None:
    return report.streams[0].status if report.streams else None
