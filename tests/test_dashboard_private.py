"""`run_stream.py --dashboard-only` keeps the dashboard private: it listens on 127.0.0.1 only, and no process it
starts tries to reach any other address (no usage statistics, no external-IP look-up), as `strace` records.

The run happens inside a private network namespace (tests/netns.py), so an attempt to reach another machine
fails there instead of leaving it; strace records the attempt all the same, and the attempt is what must not
exist.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

from stream.records import VerdictState
from stream.store import open_writer
from tests.dashboard_store import ROOT, Run
from tests.netns import private_network, require

START_TIMEOUT_S = 120.0  # torch and Streamlit import under strace
STOP_TIMEOUT_S = 30.0
DASHBOARD_LINE = re.compile(r"^dashboard: (http://127\.0\.0\.1:(\d+))$")
# strace's rendering of a connect() address: the family, then an IPv4 or IPv6 address where it has one.
CONNECT = re.compile(r"connect\(\d+, \{sa_family=(AF_\w+)(.*?)\}")
INET_ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')
ALLOWED = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
TCP_LISTEN = "0A"


@functools.cache
def strace_missing() -> str | None:
    """Why strace cannot trace a child here, or None when it can."""
    strace = shutil.which("strace")
    if strace is None:
        return "no `strace` to record the dashboard's connect() calls (Debian: strace)"
    done = subprocess.run(
        [strace, "-f", "-e", "trace=connect", "-o", os.devnull, "true"], capture_output=True, text=True
    )
    if done.returncode != 0:
        return f"strace cannot trace here ({done.stderr.strip()[:200]}); it needs ptrace (CAP_SYS_PTRACE)"
    return None


def require_strace() -> None:
    reason = strace_missing()
    if reason:
        require(reason)


def descendants(pid: int) -> list[int]:
    """`pid` and every process started under it that is still running."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):  # exited meanwhile
                queue.extend(int(child) for child in (task / "children").read_text().split())
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def decode_address(hex_address: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """/proc/net/tcp{,6}'s `ADDR:PORT`: the address in 32-bit words of host byte order (little-endian here)."""
    address, port = hex_address.split(":")
    raw = bytes.fromhex(address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words), int(port, 16)


def listening(pids: list[int]) -> list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """The TCP addresses the processes `pids` listen on, read from /proc (their own network namespace)."""
    inodes = set().union(*(socket_inodes(pid) for pid in pids))
    found = []
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pids[0]}/net/{table}")
        for row in path.read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == TCP_LISTEN and fields[9] in inodes:
                found.append(decode_address(fields[1]))
    return found


def outside_connects(trace: str) -> list[str]:
    """The connect() calls in strace's output that aim at an internet address other than 127.0.0.1 or ::1."""
    bad = []
    for line in trace.splitlines():
        match = CONNECT.search(line)
        if match is None or match.group(1) not in ("AF_INET", "AF_INET6"):
            continue  # AF_UNIX, AF_NETLINK, AF_UNSPEC (a UDP socket's disconnect): nothing leaves the machine
        address = INET_ADDRESS.search(match.group(2))
        if address is None:
            bad.append(line)  # an internet address strace could not show: count it as outside
            continue
        ip = ipaddress.ip_address(address.group(1) or address.group(2))
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip not in ALLOWED:
            bad.append(line)
    return bad


def read_dashboard_line(process: subprocess.Popen[bytes], deadline: float) -> tuple[str, int, str]:
    """The URL and port from the `dashboard: URL` line, and what came before it."""
    assert process.stdout is not None
    received = b""
    while True:
        for line in received.decode(errors="replace").splitlines():
            match = DASHBOARD_LINE.match(line.strip())
            if match:
                return match.group(1), int(match.group(2)), received.decode(errors="replace")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no `dashboard: URL` line in {START_TIMEOUT_S:g} s; stdout: {received!r}")
        readable, _, _ = select.select([process.stdout], [], [], min(remaining, 0.5))
        if readable:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                process.wait(10)
                raise AssertionError(f"the dashboard exited with {process.returncode} before its URL: {received!r}")
            received += chunk


def cross_origin_websocket(port: int) -> bytes:
    """Open the app's WebSocket as a script on another web page would (another Origin); the status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(
            (
                f"GET /_stcore/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                "Origin: http://elsewhere.example\r\n\r\n"
            ).encode()
        )
        return client.recv(4096).split(b"\r\n", 1)[0]


def test_dashboard_only_listens_on_loopback_and_connects_nowhere(tmp_path: Path) -> None:
    require_strace()
    db = tmp_path / "runs" / "deepfake.db"
    with open_writer(db) as writer:
        run = Run(writer)
        run.stream()
        run.face(1, VerdictState.FAKE, 0.9)
        writer.end_session(run.sid)
    trace = tmp_path / "connect.trace"
    stderr_path = tmp_path / "stderr.log"
    command = [
        *("strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace)),
        *(sys.executable, str(ROOT / "run_stream.py"), "--dashboard-only", "--db", str(db)),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with private_network(), stderr_path.open("wb") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, env=env)
        try:
            url, port, _ = read_dashboard_line(process, time.monotonic() + START_TIMEOUT_S)
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200 and b"<html" in response.read().lower()
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as response:
                assert response.read() == b"ok"
            # Streamlit 1.67 looks this machine's addresses up (8.8.8.8, checkip.amazonaws.com) to judge a
            # WebSocket from a foreign origin: refused, with no look-up.
            assert b" 403 " in cross_origin_websocket(port)

            detector = descendants(process.pid)[1]  # strace's child: run_stream.py
            sockets = listening(descendants(detector))
            assert (ipaddress.ip_address("127.0.0.1"), port) in sockets, sockets
            assert {address for address, _ in sockets} <= {ipaddress.ip_address("127.0.0.1")}, sockets

            os.kill(detector, signal.SIGINT)
            returncode = process.wait(STOP_TIMEOUT_S)  # strace ends with its child's exit status
        finally:
            if process.poll() is None:
                for pid in reversed(descendants(process.pid)):
                    os.kill(pid, signal.SIGKILL)
                process.wait(10)
            assert process.stdout is not None
            process.stdout.close()
    log = stderr_path.read_text(errors="replace")
    assert returncode == 0, log[-2000:]

    recorded = trace.read_text()
    assert f"htons({port})" in recorded  # strace followed the processes: the health check's connect is there
    assert outside_connects(recorded) == [], log[-2000:]


def test_outside_connects_tells_loopback_from_the_rest() -> None:
    trace = "\n".join(
        [
            '11 connect(9, {sa_family=AF_INET, sin_port=htons(8501), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
            '11 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT',
            "11 connect(9, {sa_family=AF_INET6, sin6_port=htons(80), sin6_flowinfo=htonl(0), "
            'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
            '11 connect(9, {sa_family=AF_UNSPEC, sa_data="\\0\\0\\0\\0"}, 16) = 0',
            '12 connect(9, {sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("8.8.8.8")}, 16) = -1 ENETUNREACH',
            '12 connect(9, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) = 0',
            "12 connect(9, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), "
            'inet_pton(AF_INET6, "2600:1f18::1", &sin6_addr), sin6_scope_id=0}, 28 <unfinished ...>',
        ]
    )
    assert [line.split()[0] for line in outside_connects(trace)] == ["12", "12", "12"]


def test_streamlit_started_from_the_repository_root_is_private_too() -> None:
    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["address"] == "127.0.0.1"
    assert settings["server"]["headless"] is True
    assert settings["browser"]["gatherUsageStats"] is False


def test_readme_starts_the_dashboard_the_private_way() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "streamlit run" not in readme
    assert "run_stream.py --dashboard-only --db" in readme
