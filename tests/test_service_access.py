"""Who may reach the detector's service and from where (issue 20 items 1, 4, 8): the admin and publish tokens and
where they come from, the Host and Origin guards against other sites' pages, and TLS. Real uvicorn services over one
real detector inside a private network namespace (with a veth pair: an interface address that is not loopback, and
WebRTC peers), driven with httpx and aiortc; the command line through `run_stream.py` itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import select
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

import run_stream
from dashboard.control import Control, ControlError
from dashboard.launch import DashboardError, start_dashboard
from model.weights import LoadedModel
from stream.config import ConfigError, ServiceSettings
from stream.config.tokens import read_token_file
from stream.service.app import Service, default_extensions
from stream.service.host_check import host_name
from stream.store import open_reader
from tests import media
from tests.helpers import PIN_ENGINE
from tests.netns import VETH_ADDRESSES, add_veth_pair, private_network
from tests.test_service_api import Served, one_line_problem, serving, wait_for
from tests.test_whip import delete, publish
from tests.tls_certs import Certs, make_certs

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "admin-token-5c1e"
PUBLISH = "publish-token-93ab"
EVIL = "https://evil.example"
OCTET = {"Content-Type": "application/octet-stream"}
NO_TOKENS = {k: v for k, v in os.environ.items() if k not in ("DEEPFAKE_STREAM_TOKEN", "DEEPFAKE_STREAM_PUBLISH_TOKEN")}


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    with private_network():
        add_veth_pair()  # 10.77.0.1: an address of this (namespaced) machine that is not loopback
        yield


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def open_service(
    private_netns: None, seed_model: LoadedModel, engine_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`make run`'s service: loopback, no token, with WHIP; one extra name allowed."""
    db = tmp_path_factory.mktemp("access") / "deepfake.db"
    overrides = {"service.allowed_hosts": ["detector.lan"]}
    with serving(seed_model, db, engine_cache, overrides, full=True) as running:
        yield running


@contextlib.contextmanager
def another_service(served: Served, **changes: object) -> Iterator[tuple[Service, str]]:
    """A second service (its own settings, WHIP and metrics) over the same running detector; its loopback URL."""
    settings = replace(served.service.settings, **changes)
    service = Service(served.detector, settings, default_extensions(served.detector, settings))
    try:
        url = service.start()
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        yield service, f"{'https' if settings.tls else 'http'}://127.0.0.1:{port}/"
    finally:
        service.stop()


@pytest.fixture(scope="module")
def tokened(open_service: Served) -> Iterator[str]:
    """A service on every address (0.0.0.0) with an admin and a publish token; its URL on 127.0.0.1."""
    with another_service(open_service, host="0.0.0.0", token=ADMIN, publish_token=PUBLISH) as (_, url):
        yield url


def port_of(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


# ---- Host: DNS rebinding -------------------------------------------------------------------------------------------
def test_host_names_are_parsed_with_or_without_a_port() -> None:
    assert host_name("127.0.0.1:8080") == "127.0.0.1" and host_name("LocalHost.") == "localhost"
    assert host_name("[::1]:80") == "::1" and host_name("[0:0::1]") == "::1"
    assert host_name("a.example:x") is None and host_name("a b") is None and host_name("[::1") is None


def test_a_tokenless_loopback_service_answers_only_its_own_names(open_service: Served) -> None:
    port = port_of(open_service.url)
    with httpx.Client(base_url=open_service.url, timeout=10) as client:
        for host in (
            "rebind.attacker.example",
            f"rebind.attacker.example:{port}",
            f"{VETH_ADDRESSES[0]}:{port}",
            "a b",
        ):
            for path in ("/api/streams", "/healthz", "/"):
                detail = one_line_problem(client.get(path, headers={"Host": host}), 421)
                assert "allowed_hosts" in detail
        for host in (
            f"127.0.0.1:{port}",
            "127.0.0.1",
            f"localhost:{port}",
            "LOCALHOST",
            f"[::1]:{port}",
            "detector.lan",
        ):
            assert client.get("/api/streams", headers={"Host": host}).status_code == 200, host


def test_with_a_token_the_machines_own_addresses_are_accepted_too(tokened: str) -> None:
    port = port_of(tokened)
    with httpx.Client(base_url=tokened, timeout=10, headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        assert client.get("/api/streams", headers={"Host": f"{VETH_ADDRESSES[0]}:{port}"}).status_code == 200
        assert client.get("/api/streams", headers={"Host": VETH_ADDRESSES[0]}).status_code == 200
        for host in ("10.77.0.99", "rebind.attacker.example", "detector.elsewhere"):
            one_line_problem(client.get("/api/streams", headers={"Host": host}), 421)
    with httpx.Client(base_url=f"http://{VETH_ADDRESSES[0]}:{port}", timeout=10) as lan:  # as OBS on the LAN calls
        assert lan.get("/healthz").status_code == 200
        assert lan.get("/api/streams", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200


# ---- Origin and Content-Type: other sites' simple requests -----------------------------------------------------------
def test_another_sites_page_cannot_upload_or_drive_a_tokenless_service(open_service: Served) -> None:
    own = f"http://127.0.0.1:{port_of(open_service.url)}"
    with httpx.Client(base_url=open_service.url, timeout=10) as client:
        text = {"Content-Type": "text/plain"}
        assert "cross-site" in one_line_problem(
            client.post("/api/uploads", content=b"x", headers={**text, "Origin": EVIL}), 403
        )
        assert "Content-Type" in one_line_problem(client.post("/api/uploads", content=b"x", headers=text), 415)
        one_line_problem(client.post("/api/uploads", content=b"x"), 415)  # no type at all: also a simple request
        one_line_problem(client.post("/api/uploads", content=b"x", headers={**OCTET, "Origin": EVIL}), 403)
        one_line_problem(client.post("/api/uploads", content=b"x", headers={**OCTET, "Origin": "null"}), 403)
        one_line_problem(client.post("/api/streams", json={"source": "demo"}, headers={"Origin": EVIL}), 403)
        one_line_problem(client.delete("/api/streams/nobody", headers={"Origin": EVIL}), 403)
        whip = client.post("/whip/cam", content="v=0", headers={"Content-Type": "application/sdp", "Origin": EVIL})
        one_line_problem(whip, 403)
        # The service's own pages (any loopback origin, an allowed name) pass the guard: an empty body is then a 400.
        for origin in (own, "http://localhost:9999", "http://detector.lan"):
            for kind in ("application/octet-stream", "video/mp4"):
                empty = client.post("/api/uploads", content=b"", headers={"Content-Type": kind, "Origin": origin})
                assert "empty" in one_line_problem(empty, 400)
        page_whip = client.post("/whip/cam", content="", headers={"Content-Type": "application/sdp", "Origin": own})
        assert "empty SDP" in one_line_problem(page_whip, 400)
        assert client.get("/api/streams", headers={"Origin": EVIL}).status_code == 200  # a read: the browser hides it


def test_with_its_token_a_foreign_origin_may_call(tokened: str) -> None:
    with httpx.Client(base_url=tokened, timeout=10) as client:
        one_line_problem(client.post("/api/uploads", content=b"", headers={**OCTET, "Origin": EVIL}), 403)
        allowed = client.post(
            "/api/uploads", content=b"", headers={**OCTET, "Origin": EVIL, "Authorization": f"Bearer {ADMIN}"}
        )
        assert "empty" in one_line_problem(allowed, 400)


# ---- the tokens ------------------------------------------------------------------------------------------------------
def test_the_bearer_scheme_is_case_insensitive(tokened: str) -> None:
    with httpx.Client(base_url=tokened, timeout=10) as client:
        for scheme in ("bearer", "BEARER", "Bearer", "bEaReR"):
            assert client.get("/api/streams", headers={"Authorization": f"{scheme} {ADMIN}"}).status_code == 200
        for header in (ADMIN, f"Basic {ADMIN}", f"Bearer {ADMIN}x", "Bearer", f"Bearer{ADMIN}"):
            one_line_problem(client.get("/api/streams", headers={"Authorization": header}), 401)


def test_a_publish_token_publishes_and_reads_only_its_whip_stream(open_service: Served, tokened: str) -> None:
    publisher = {"Authorization": f"Bearer {PUBLISH}"}
    admin = {"Authorization": f"Bearer {ADMIN}"}
    base = tokened.rstrip("/")
    with httpx.Client(base_url=base, timeout=30) as client:
        for method, path in [
            ("GET", "/api/streams"),
            ("POST", "/api/streams"),
            ("GET", "/api/uploads"),
            ("POST", "/api/uploads"),
            ("GET", "/openapi.json"),
            ("GET", "/metrics"),
        ]:
            refused = client.request(method, path, headers={**publisher, **OCTET}, content=b"x")
            assert "admin token" in one_line_problem(refused, 403), path
        added = client.post("/api/streams", json={"source": "demo", "name": "admins-demo"}, headers=admin)
        assert added.status_code in (201, 202), added.text
        video = media.write_video(
            open_service.detector.settings.store.db.parent / "pub.mp4", media.render(media.one_face(), 40)
        )

        async def scenario() -> None:
            session = await publish(base, "phone", video, token=PUBLISH)
            try:
                await asyncio.to_thread(
                    wait_for,
                    lambda: client.get("/whip/phone/faces", headers=publisher).status_code == 200,
                    30,
                    "the stream",
                )
                # Another stream (the admin's) is as unknown to a publisher as a missing one; the admin sees both.
                assert "no stream" in one_line_problem(client.get("/whip/admins-demo/faces", headers=publisher), 404)
                assert client.get("/whip/admins-demo/faces", headers=admin).status_code == 200
                assert (await delete(base, session.location, PUBLISH)).status_code == 200
            finally:
                await session.close()
            session = await publish(base, "by-admin", video, token=ADMIN)  # the admin token may publish too
            try:
                assert (await delete(base, session.location, ADMIN)).status_code == 200
            finally:
                await session.close()

        asyncio.run(scenario())
        assert client.delete("/api/streams/admins-demo", headers=admin).status_code == 200


def test_a_publish_token_needs_an_admin_token_and_differs_from_it() -> None:
    with pytest.raises(ValueError, match="needs token"):
        ServiceSettings(publish_token="p")
    with pytest.raises(ValueError, match="must differ"):
        ServiceSettings(token="same", publish_token="same")


def test_a_token_file_others_can_read_is_refused_as_ssh_does(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"{ADMIN}\n")
    path.chmod(0o600)
    assert read_token_file(path) == ADMIN
    for mode in (0o644, 0o640, 0o604, 0o660):
        path.chmod(mode)
        with pytest.raises(ConfigError, match=re.escape(f"chmod 600 {path}")):
            read_token_file(path)
    path.chmod(0o600)
    path.write_text("two words\n")
    with pytest.raises(ConfigError, match="one token"):
        read_token_file(path)


@pytest.mark.parametrize(
    ("mode", "args", "words"),
    [
        (0o644, ["--token-file", "{file}"], "chmod 600"),
        (0o600, ["--token-file", "{file}", "--token", "x"], "not both"),
        (0o600, ["--token-file", "{folder}/missing"], "No such file"),
        (0o600, ["--tls-cert", "{cert}"], "tls_cert and tls_key go together"),
        (0o600, ["--tls-cert", "{folder}/missing.pem", "--tls-key", "{key}"], "--tls-cert"),
        (0o600, ["--tls-cert", "{cert}", "--tls-key", "{other_key}"], "KEY_VALUES_MISMATCH"),
        (0o600, ["--public-url", "ftp://x"], "public_url must be"),
        (0o600, ["--publish-token", "p"], "publish_token needs token"),
    ],
)
def test_token_and_tls_mistakes_are_one_line_before_the_model_loads(
    mode: int, args: list[str], words: str, tmp_path: Path, certs: Certs
) -> None:
    token = tmp_path / "token"
    token.write_text(ADMIN)
    token.chmod(mode)
    names = {"file": token, "folder": tmp_path, "cert": certs.cert, "key": certs.key, "other_key": certs.other_key}
    done = subprocess.run(
        [sys.executable, str(ROOT / "run_stream.py"), "--serve", "0", "--db", str(tmp_path / "x.db")]
        + [arg.format(**names) for arg in args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=NO_TOKENS,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], done.stderr
    assert not (tmp_path / "x.db").exists()


def test_a_token_on_the_command_line_warns_that_ps_shows_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    keys = run_stream.serve_keys(run_stream.parse_args(["--serve", "0", "--token", ADMIN, "--publish-token", PUBLISH]))
    assert keys["service.token"] == ADMIN and keys["service.publish_token"] == PUBLISH
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 2 and all("`ps` shows it" in w and w.startswith("warning: ") for w in warnings)
    assert ADMIN not in "".join(warnings)
    file = tmp_path / "t"
    file.write_text(ADMIN)
    file.chmod(0o600)
    keys = run_stream.serve_keys(run_stream.parse_args(["--serve", "0", "--token-file", str(file)]))
    assert keys["service.token"] == ADMIN and capsys.readouterr().err == ""


# ---- TLS -------------------------------------------------------------------------------------------------------------
def test_an_https_service_is_reachable_with_its_ca_and_refused_without(open_service: Served, certs: Certs) -> None:
    changes = {"tls_cert": certs.cert, "tls_key": certs.key, "token": ADMIN, "public_url": "https://localhost:1/"}
    with another_service(open_service, **changes) as (service, url):
        assert url.startswith("https://") and service.url.startswith("https://127.0.0.1:")
        with open_reader(open_service.detector.settings.store.db) as reader:
            [session] = [s for s in reader.sessions() if s.session_id == open_service.detector.session_id]
        assert session.service_url == "https://localhost:1/"  # what clients call, not the bind address
        verified = ssl.create_default_context(cafile=certs.ca)
        with httpx.Client(verify=verified, timeout=10) as client:
            assert client.get(url + "healthz").json() == {"ok": True}
        with httpx.Client(timeout=10) as client, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.get(url + "healthz")
        with pytest.raises(httpx.RemoteProtocolError):  # plain HTTP to the TLS port gets no HTTP answer
            httpx.get(url.replace("https://", "http://") + "healthz", timeout=10)
        # The dashboard's client: verified with the CA it is given, refused without it.
        assert Control(url, ADMIN, ca=str(certs.ca)).limits().max_mb > 0
        assert not Control(url, ADMIN).alive()
        with pytest.raises(ControlError, match="certificate"):
            Control(url, ADMIN).limits()
        with pytest.raises(ControlError, match="CA file"):
            Control(url, ADMIN, ca=str(certs.key)).limits()


def test_the_dashboard_refuses_a_ca_file_it_cannot_use(tmp_path: Path, certs: Certs) -> None:
    for bad in (certs.key, tmp_path / "missing.pem"):
        with pytest.raises(DashboardError, match=r"^--tls-ca .* cannot be used: "):
            start_dashboard(tmp_path / "x.db", tls_ca=bad)


def test_serving_beyond_loopback_without_tls_warns_once(
    open_service: Served, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="deepfake_stream")
    with another_service(open_service, host="0.0.0.0", token=ADMIN):
        pass
    warned = [r.getMessage() for r in caplog.records if "without TLS" in r.getMessage()]
    assert len(warned) == 1 and "--tls-cert" in warned[0]
    caplog.clear()
    with another_service(open_service, host="0.0.0.0", token=ADMIN, tls_cert=certs.cert, tls_key=certs.key):
        pass
    with another_service(open_service):  # loopback
        pass
    assert not [r for r in caplog.records if "without TLS" in r.getMessage()]


# ---- the command line, end to end ----------------------------------------------------------------------------------
def test_run_stream_serves_https_with_a_token_file_and_a_publish_token(tmp_path: Path, certs: Certs) -> None:
    token = tmp_path / "admin.token"
    token.write_text(ADMIN + "\n")
    token.chmod(0o600)
    db = tmp_path / "cli.db"
    command = [sys.executable, str(ROOT / "run_stream.py"), *PIN_ENGINE, "--serve", "0", "--window", "10"]
    command += ["--token-file", str(token), "--tls-cert", str(certs.cert), "--tls-key", str(certs.key), "--db", str(db)]
    env = {**NO_TOKENS, "PYTHONUNBUFFERED": "1", "DEEPFAKE_STREAM_PUBLISH_TOKEN": PUBLISH}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready, "no service line within 120 s"
        match = re.fullmatch(r"service: (https://127\.0\.0\.1:\d+/)\n", process.stdout.readline())
        assert match
        url = match.group(1)
        with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=certs.ca), timeout=30) as client:
            assert client.get("api/streams").status_code == 401
            assert client.get("api/streams", headers={"Authorization": f"bearer {ADMIN}"}).status_code == 200
            assert client.get("api/streams", headers={"Authorization": f"Bearer {PUBLISH}"}).status_code == 403
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "warning: " not in stderr  # a file and the environment: nothing to warn
    for path in [*db.parent.glob("cli.db*")]:
        assert ADMIN.encode() not in path.read_bytes() and PUBLISH.encode() not in path.read_bytes()
    assert ADMIN not in stdout + stderr and PUBLISH not in stdout + stderr
    with open_reader(db) as reader:
        session = reader.latest_session()
        assert session is not None and session.service_url == url
        config = reader.session_config(session.session_id)["service"]
    assert config["token"] == "<set>" and config["publish_token"] == "<set>"
