"""What the service's API may add as a source (`service.api_sources`, `media_dir`, `camera_hosts`), decided before
anything touches a path or a network: files only from inside the media folder, with one refusal whatever the reason
(no oracle for what exists on the detector's machine); cameras only on the allowed hosts, refused before any
connection. The CLI does not go through here: the person at the keyboard owns the machine."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from stream.capture.references import (
    CHECKED_FORMATS,
    CHECKED_FORMATS_SAID,
    LIVE_SCHEMES,
    VIDEO_DEVICE,
    SourceError,
    SourceSpec,
    parse_source,
    path_problem,
)
from stream.config import ServiceSettings

FILE_REFUSED = (
    "not a video this detector may open: a file must be a readable video "
    f"({CHECKED_FORMATS_SAID}) inside its media folder (service.media_dir)"
)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(Exception):
    """A source the policy does not allow (403) or a reference that cannot be one (400); the message is one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class KindPolicy:
    """One kind of source: whether the API may add it, and why not when it may not."""

    kind: str
    allowed: bool
    reason: str | None


def kind_of(reference: str) -> str:
    """The kind a reference names, from its text alone (nothing is opened or looked up): demo, webcam, rtsp, screen,
    other (an unknown scheme) or file."""
    if reference == "demo":
        return "demo"
    if reference.isdigit() or VIDEO_DEVICE.match(reference):
        return "webcam"
    scheme = urlsplit(reference).scheme.lower() if "://" in reference else ""
    if scheme in LIVE_SCHEMES:
        return "rtsp"
    if reference == "screen" or reference.startswith("screen:"):
        return "screen"
    return "other" if "://" in reference else "file"


class SourcePolicy:
    """The service's rules for API-added sources, from its settings."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.kinds = frozenset(settings.api_sources)
        self.media_dir = settings.media_dir
        self.camera_hosts = settings.camera_hosts
        self._networks: list[Network] = []
        self._names: list[str] = []
        for entry in settings.camera_hosts:
            try:
                self._networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                self._names.append(entry.strip().lower())

    def allows(self, kind: str) -> bool:
        return self.kind_policy(kind).allowed

    def kind_policy(self, kind: str) -> KindPolicy:
        """Whether the API may add sources of `kind`, and why not (for the Cameras page)."""
        if kind not in self.kinds:
            return KindPolicy(kind, False, f"off in this detector's config (service.api_sources leaves out {kind})")
        if kind == "file" and self.media_dir is None:
            return KindPolicy(kind, False, "off: the detector's config sets no service.media_dir to take files from")
        return KindPolicy(kind, True, None)

    def check(self, reference: str) -> SourceSpec:
        """The source `reference` names, if the API may add it: Refused otherwise (403 for what the policy does not
        allow, 400 for what cannot be a source at all). Blocking: it may look a camera's host up."""
        reference = reference.strip()
        kind = kind_of(reference)
        if kind == "file":
            return self._file(reference)
        if kind != "other" and not self.allows(kind):
            raise self._off(kind)
        try:
            spec = parse_source(reference)
        except SourceError as error:
            raise Refused(400, str(error)) from None
        return self._camera(spec) if spec.kind == "rtsp" and self.camera_hosts else spec

    def opening_failed(self, spec: SourceSpec, error: SourceError) -> Refused:
        """A source the policy allowed that could not be opened: a file gets the one refusal (what went wrong would
        say what the file is), anything else its own one-line reason."""
        return Refused(403, FILE_REFUSED) if spec.kind == "file" else Refused(400, str(error))

    def _off(self, kind: str) -> Refused:
        return Refused(403, f"{kind} sources cannot be added through the API: {self.kind_policy(kind).reason}")

    def _file(self, reference: str) -> SourceSpec:
        """A video file inside the media folder, resolved (symlinks followed) before it is checked; the one
        refusal for everything else, whether it exists or not."""
        problem = path_problem(reference)
        if problem:
            raise Refused(400, problem)
        if not self.allows("file") or self.media_dir is None:
            raise self._off("file")
        given = os.path.abspath(self.media_dir)
        # Judged on the text first: a path outside the folder is refused before anything on disk is looked at.
        wanted = os.path.normpath(os.path.join(given, reference))
        try:
            root = os.path.realpath(given)
            inside = [folder for folder in {given, root} if _within(wanted, folder)]
            if not inside:
                raise Refused(403, FILE_REFUSED)
            resolved = os.path.realpath(wanted)
            if not _within(resolved, root) or not os.path.isfile(resolved) or not os.access(resolved, os.R_OK):
                raise Refused(403, FILE_REFUSED)
        except (OSError, ValueError):
            raise Refused(403, FILE_REFUSED) from None
        shown = os.path.relpath(wanted, inside[0])
        return SourceSpec("file", resolved, live=False, display=shown, formats=CHECKED_FORMATS)

    def _camera(self, spec: SourceSpec) -> SourceSpec:
        """An RTSP camera whose host resolves only to allowed addresses; for rtsp:// the address checked is the one
        FFmpeg connects to (the URL's host is replaced by it), so a name cannot resolve elsewhere afterwards."""
        parts = urlsplit(spec.target)
        host = parts.hostname or ""
        try:
            port = parts.port
        except ValueError:
            raise Refused(400, f"{spec.display} has a bad port: use 1..65535") from None
        refused = Refused(403, f"camera host {host!r} is not in this detector's service.camera_hosts: not added")
        addresses = _resolve(host, port)
        if not addresses or not all(self._host_allowed(address) for address in addresses):
            raise refused
        if parts.scheme.lower() != "rtsp":
            return spec  # rtsps: the name stays, for its certificate
        address = addresses[0]
        shown = f"[{address}]" if address.version == 6 else str(address)
        login = parts.netloc.rpartition("@")[0]
        netloc = f"{login}@" * bool(login) + shown + (f":{port}" if port else "")
        pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        return SourceSpec(spec.kind, pinned, spec.live, spec.display)

    def _host_allowed(self, address: Address) -> bool:
        if any(address in network for network in self._networks):
            return True
        return any(address in _resolve(name, None) for name in self._names)


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _resolve(host: str, port: int | None) -> list[Address]:
    """The addresses `host` resolves to (an address itself, as it is); none when it does not resolve."""
    bare = host.strip("[]")
    try:
        return [ipaddress.ip_address(bare)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    found: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found
