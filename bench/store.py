"""Score store benchmark: write throughput (rows/s) with 1 and 4 writer processes, and the dashboard's queries at
10^6 scores, SQLite (WAL, synchronous=NORMAL) against PostgreSQL (a local server with its default durability:
fsync on, synchronous_commit on; started here on a unix socket, stopped at the end).

Each writer is a process with its own session, writing as a detector does: per commit (one loop iteration) a batch
of scores, one face update and one health row. The dashboard's queries are timed on the store the 1-writer run
filled (one session of 10^6 scores over 10 streams × 5 faces), median of repeated calls.

    .venv/bin/python bench/store.py [--rows 1000000] [--batch 100]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream.records import FaceUpdate, StreamHealth, StreamInfo, StreamState, VerdictState, WindowScore
from stream.store import SessionInfo, open_reader, open_writer
from tests.pg_server import postgres_server, server_missing

INFO = SessionInfo("bench.pt", True, 20, 1, "mean", 0.5, 0.1, "cpu", "onnxruntime", ["bench"])
STREAMS, FACES = 10, 5  # per session: 50 faces, scores spread evenly
CHART_POINTS = 1000  # dashboard.data.MAX_CHART_POINTS: a face's chart reads its newest this many scores


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def write(target: str, rows: int, batch: int, ready: multiprocessing.Barrier) -> None:  # type: ignore[type-arg]
    """One writer process: its own session, `rows` scores in commits of `batch`."""
    with open_writer(target, retention_days=None) as w:
        sid = w.start_session(INFO)
        for s in range(STREAMS):
            w.add_stream(sid, StreamInfo(f"cam{s}", f"rtsp://cam{s}", "rtsp"))
        w.commit()
        ready.wait()
        t0 = time.time()
        written = 0
        while written < rows:
            n = min(batch, rows - written)
            scores = []
            for k in range(written, written + n):
                face = k % (STREAMS * FACES)
                stream, track, frame = f"cam{face // FACES}", face % FACES, k // (STREAMS * FACES)
                scores.append(WindowScore(sid, stream, track, frame, frame / 30, 20, 0.3, t0 + k / 1000, t0))
            w.write_scores(scores)
            last = scores[-1]
            w.write_face(
                sid,
                FaceUpdate(
                    last.stream_id,
                    last.track_id,
                    t0,
                    time.time(),
                    0.0,
                    last.t_media,
                    "live",
                    VerdictState.REAL,
                    0.3,
                    last.frame_index + 1,
                    None,
                ),
            )
            health = StreamHealth(last.stream_id, StreamState.LIVE, 30.0, 30.0, 0, 0, None)
            w.write_health(sid, health, time.time())
            w.commit()
            written += n
        w.end_session(sid)


def write_rate(target: str, writers: int, rows: int, batch: int) -> float:
    """Rows/s over all writers, from the moment all are ready to the last one's end."""
    ready = multiprocessing.Barrier(writers + 1)
    share = rows // writers
    processes = [multiprocessing.Process(target=write, args=(target, share, batch, ready)) for _ in range(writers)]
    for p in processes:
        p.start()
    ready.wait()
    start = time.perf_counter()
    for p in processes:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a writer failed (exit {p.exitcode})")
    return share * writers / (time.perf_counter() - start)


def median_s(step: Callable[[], object], repeats: int = 7) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def query_times(target: str) -> dict[str, float]:
    """Median seconds of each query the dashboard makes on a page run, over the newest session."""
    with open_reader(target) as r:
        sid = r.latest_session().session_id
        face = r.faces(sid)[0]
        return {
            "sessions": median_s(r.sessions),
            "faces": median_s(lambda: r.faces(sid)),
            "face chart (newest 1000)": median_s(
                lambda: r.scores(sid, face.stream_id, face.track_id, limit=CHART_POINTS)
            ),
            "face summaries (whole run)": median_s(lambda: r.face_summaries(sid), repeats=3),
        }


def table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    for row in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="scores written per configuration")
    parser.add_argument("--batch", type=int, default=100, help="scores per commit (one loop iteration)")
    args = parser.parse_args()
    missing = server_missing()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 1
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); Python {platform.python_version()}")
    print(f"{args.rows:,} scores per configuration, {args.batch} per commit (+1 face, +1 health row)")
    writes: list[list[str]] = []
    queries: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as folder, postgres_server(durable=True) as server:
        version = server.psql("SHOW server_version")[0][0]
        print(f"PostgreSQL {version} (fsync on, synchronous_commit on); SQLite WAL, synchronous=NORMAL")
        for writers in (1, 4):
            rates = {}
            for backend in ("SQLite", "PostgreSQL"):
                name = f"w{writers}"
                target = str(Path(folder) / f"{name}.db") if backend == "SQLite" else server.create_database(name)
                rates[backend] = write_rate(target, writers, args.rows, args.batch)
                if writers == 1:
                    queries[backend] = query_times(target)
                print(f"  {backend}, {writers} writer(s): {rates[backend]:,.0f} rows/s", flush=True)
            writes.append([str(writers), *(f"{rates[b]:,.0f}" for b in ("SQLite", "PostgreSQL"))])
    print("\nWrite throughput (scores/s, all writers together)")
    table(["writers", "SQLite", "PostgreSQL"], writes)
    print(f"\nDashboard queries at {args.rows:,} scores (one session), median ms")
    names = list(queries["SQLite"])
    table(
        ["query", "SQLite", "PostgreSQL"],
        [[n, f"{queries['SQLite'][n] * 1000:.2f}", f"{queries['PostgreSQL'][n] * 1000:.2f}"] for n in names],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
