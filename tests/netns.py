"""Network tests run inside a private network namespace, so nothing they do can leave the machine.

The rule (DESIGN.md, "Tests (layers)"): a test that opens a socket runs in a fresh network namespace whose
only interface is loopback, brought up (`unshare -n`, `ip link set lo up`). There is no other interface and
no route in there, so no server can bind a public address and no packet can reach another machine.

How it works: `private_network()` calls `unshare(CLONE_NEWNET)` (through ctypes: `os.unshare` needs Python
3.12) on the calling thread, which is the thread pytest runs tests on. Linux keeps namespaces per thread, and
every thread and child process started from that thread afterwards is created inside the new namespace:
servers started with `subprocess`, the capture threads of `stream.capture.sources.Source`, event loops run in new
threads. On exit it moves the thread back with `setns` to the namespace it came from. It needs root (or
CAP_SYS_ADMIN); a pytest already run inside a namespace with nothing but loopback (e.g. under
`unshare -rn sh -c 'ip link set lo up && pytest'` as a normal user) is accepted as it is.

How a test module uses it (every test in the module runs in one private namespace):

    @pytest.fixture(scope="module", autouse=True)
    def private_netns() -> Iterator[None]:
        with private_network():
            yield

or `with private_network():` around the part of one test that uses the network. Start threads, thread pools,
event loops and subprocesses inside it: ones made before entering stay in the machine's namespace.

WebRTC peers need a non-loopback address (aioice leaves loopback out of its ICE candidates): `add_veth_pair()`
gives the namespace a veth pair with both ends inside it (dfs0 10.77.0.1/24, dfs1 10.77.0.2/24), which leads
nowhere else. The namespace still counts as private with it.

When the system part is missing (no permission to unshare, no `ip`, no GStreamer RTSP server for the system
Python), `require()` skips the test with the reason, or fails it when the environment variable `CI` is set
(DESIGN.md: under CI a missing part is an error, not a skip).

`RtspServer` / `rtsp_server()` run `tests/rtsp_server.py` (GStreamer's RTSP server, with the system Python)
inside the namespace, wait for its READY line and always stop it, also when the test fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

CLONE_NEWNET = 0x40000000
VETH = ("dfs0", "dfs1")
VETH_ADDRESSES = ("10.77.0.1", "10.77.0.2")
SYSTEM_PYTHON = Path("/usr/bin/python3")
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
_libc = ctypes.CDLL(None, use_errno=True)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(reason: str) -> NoReturn:
    """A system part the test needs is missing: skip outside CI, fail under CI."""
    if in_ci():
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _namespace_id() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def _interfaces() -> list[str]:
    """The network interfaces of the calling thread's namespace."""
    lines = Path("/proc/thread-self/net/dev").read_text().splitlines()[2:]
    return [line.split(":", 1)[0].strip() for line in lines]


def is_private() -> bool:
    """The calling thread's network namespace has nothing but loopback (and, maybe, our veth pair, whose two ends
    are both inside it)."""
    return sorted(_interfaces()) in (["lo"], sorted(["lo", *VETH]))


def _ip_command() -> str | None:
    found = shutil.which("ip")
    if found:
        return found
    return next((str(path) for path in (Path("/usr/sbin/ip"), Path("/sbin/ip")) if path.exists()), None)


def _loopback_up() -> None:
    ip = _ip_command()
    if ip is None:
        require("no `ip` command to bring up loopback in the test's network namespace (Debian: iproute2)")
    done = subprocess.run([ip, "link", "set", "lo", "up"], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        require(f"cannot bring up loopback in a private network namespace: {done.stderr.strip()}")


@contextlib.contextmanager
def private_network() -> Iterator[None]:
    """Run the body in a fresh network namespace with only loopback, up; the thread returns afterwards."""
    if is_private():  # already isolated (e.g. pytest run under `unshare -n`): nothing to enter or leave
        _loopback_up()
        yield
        return
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            error = os.strerror(ctypes.get_errno())
            require(f"cannot make a private network namespace (unshare: {error}); run the tests as root")
        try:
            if not is_private():
                raise RuntimeError(f"unshare(CLONE_NEWNET) left other interfaces: {_interfaces()}")
            _loopback_up()
            yield
        finally:
            if _libc.setns(original, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original network namespace failed")
    finally:
        os.close(original)


def add_veth_pair() -> tuple[str, str]:
    """Give the calling thread's private namespace a non-loopback link for WebRTC peers: the veth pair dfs0
    (10.77.0.1/24) <-> dfs1 (10.77.0.2/24), both ends inside it, both up. Returns the two addresses; a second call
    finds the pair in place."""
    require_private_network()
    if VETH[0] in _interfaces():
        return VETH_ADDRESSES
    ip = _ip_command()
    if ip is None:
        require("no `ip` command to add a veth pair in the test's network namespace (Debian: iproute2)")
    steps = [
        ["link", "add", VETH[0], "type", "veth", "peer", "name", VETH[1]],
        *(["addr", "add", f"{address}/24", "dev", name] for name, address in zip(VETH, VETH_ADDRESSES, strict=True)),
        *(["link", "set", name, "up"] for name in VETH),
    ]
    for step in steps:
        done = subprocess.run([ip, *step], capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            require(
                f"cannot add a veth pair in the private network namespace (ip {' '.join(step)}): {done.stderr.strip()}"
            )
    return VETH_ADDRESSES


def require_private_network() -> None:
    """Refuse to start a network peer outside a private namespace (a test bug, not a missing system part)."""
    if not is_private():
        raise RuntimeError(
            f"network tests must run inside tests.netns.private_network() (this thread's namespace "
            f"{_namespace_id()} has interfaces {_interfaces()})"
        )


@functools.cache
@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts every connection and never answers (a camera that hangs); its port."""
    server = socket.create_server(("127.0.0.1", 0), backlog=128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, name="silent-port", daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        server.close()


def rtsp_server_missing() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or None when it can."""
    if not SYSTEM_PYTHON.exists():
        return f"no system Python at {SYSTEM_PYTHON} to run the GStreamer RTSP server"
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0')\n"
        "from gi.repository import Gst, GstRtspServer\n"
        "Gst.init(None)\n"
        "missing = [e for e in ('qtdemux', 'h264parse', 'rtph264pay', 'openh264enc', 'videotestsrc')\n"
        "           if Gst.ElementFactory.find(e) is None]\n"
        "assert not missing, 'missing GStreamer elements: ' + ', '.join(missing)\n"
    )
    try:
        done = subprocess.run([str(SYSTEM_PYTHON), "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot run {SYSTEM_PYTHON}: {error}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return (
            f"no GStreamer RTSP server for {SYSTEM_PYTHON} ({last}); install the Debian packages "
            "gir1.2-gst-rtsp-server-1.0 python3-gi"
        )
    return None


def require_rtsp_server() -> None:
    reason = rtsp_server_missing()
    if reason:
        require(reason)


class RtspServer:
    """`tests/rtsp_server.py` in a subprocess, serving one stream on 127.0.0.1 (see that script for modes).

    `start()` returns the URL once the server listens; `kill()` ends it at once (SIGKILL, as a crash would);
    `restart()` starts it again on the same port; `freeze()`/`thaw()` hang and resume it (SIGSTOP/SIGCONT);
    `stop()` ends it cleanly. `auth="user:password"` makes it demand those credentials (401 otherwise).
    As a context manager it is started on entry and always ended on exit.
    """

    def __init__(
        self,
        video: Path | None = None,
        path: str = "/cam",
        pattern: str | None = None,
        port: int = 0,
        auth: str | None = None,
        ready_timeout_s: float = 20.0,
    ) -> None:
        if (video is None) == (pattern is None):
            raise ValueError("give exactly one of video or pattern")
        self.video = video
        self.pattern = pattern
        self.path = path
        self.port = port
        self.auth = auth
        self.ready_timeout_s = ready_timeout_s
        self.url: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._logs = Path(tempfile.mkdtemp(prefix="rtsp-server-"))

    def _command(self) -> list[str]:
        source = ["--video", str(self.video)] if self.video is not None else ["--pattern", str(self.pattern)]
        auth = ["--auth", self.auth] if self.auth is not None else []
        return [str(SYSTEM_PYTHON), str(SERVER_SCRIPT), "--port", str(self.port), "--path", self.path, *source, *auth]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> str:
        """Start the server and wait for its READY line; RuntimeError (with its stderr) when it does not come."""
        require_rtsp_server()
        require_private_network()
        if self.running:
            raise RuntimeError("the RTSP server is already running")
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            line = self._launch(deadline)
            if line is not None:
                break
            if time.monotonic() >= deadline or self.port == 0:  # a fixed port may still be held: try again
                raise RuntimeError(f"the RTSP server did not start: {self._stderr_tail()}")
            time.sleep(0.1)
        self.url = line.split(maxsplit=1)[1]
        self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
        return self.url

    def _launch(self, deadline: float) -> str | None:
        """One try: the READY line, or None when the server exited before it (its stderr says why)."""
        with (self._logs / "stderr.log").open("wb") as stderr:  # the child keeps its own copy of the file
            process = subprocess.Popen(self._command(), stdout=subprocess.PIPE, stderr=stderr)
        self._process = process
        assert process.stdout is not None
        received = b""
        while b"\n" not in received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise RuntimeError(f"the RTSP server sent no READY line in {self.ready_timeout_s:g} s")
            readable, _, _ = select.select([process.stdout], [], [], min(remaining, 0.2))
            if readable:
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:  # stdout closed: the server exited
                    process.wait(5)
                    self._close_stdout()
                    return None
                received += chunk
        line = received.split(b"\n", 1)[0].decode().strip()
        if not line.startswith("READY rtsp://"):
            self.kill()
            raise RuntimeError(f"unexpected first line from the RTSP server: {line!r}")
        return line

    def _stderr_tail(self) -> str:
        log = self._logs / "stderr.log"
        text = log.read_text(errors="replace").strip() if log.exists() else ""
        return " | ".join(text.splitlines()[-5:]) or "(no output)"

    def kill(self) -> None:
        """End the server at once, mid-stream if a client is reading (SIGKILL)."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(10)
            self._close_stdout()

    def freeze(self) -> None:
        """Stop the server process (SIGSTOP): connections stay open and new ones are accepted by the kernel,
        but nothing is answered or sent, like a hung camera."""
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen server run again (SIGCONT)."""
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGCONT)

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """End the server cleanly (SIGTERM), killing it if it does not exit in time; its exit status."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            self._process.send_signal(signal.SIGCONT)  # a frozen server acts on SIGTERM only once continued
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_stdout()
        return self._process.returncode

    def restart(self) -> str:
        """Kill the server if it runs and start it again on the same port (the URL stays the same)."""
        if self.url is None:
            raise RuntimeError("restart() needs a server that was started once")
        self.kill()
        url = self.start()
        assert url == self.url
        return url

    def _close_stdout(self) -> None:
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self._logs, ignore_errors=True)

    def __enter__(self) -> RtspServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def rtsp_server(video_path: Path, path: str = "/cam") -> Iterator[str]:
    """Serve `video_path` (H.264 MP4) at rtsp://127.0.0.1:PORT`path` and yield the URL; always stops it."""
    with RtspServer(video=video_path, path=path) as server:
        assert server.url is not None
        yield server.url
