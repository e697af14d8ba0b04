"""What a run can check without the model, checked before it loads: the report path, the score store, the service's
port (bound now and kept) and the sources, a screen region against its display. Light: no torch, av or cv2."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stream.capture.content import sniff_file
from stream.capture.references import SourceError, SourceSpec, parse_source, still_image
from stream.capture.x_display import check_screen
from stream.config import Settings
from stream.service.listen import ServiceError, open_listener
from stream.store import StoreError, open_writer


class PreflightError(Exception):
    """A setting the run cannot start with (a usage error): the message is one line for the user."""


@dataclass
class Checked:
    """The sources that can be used, why the others cannot (one line each), and the service's listening socket
    (taken over by the service; `close()` drops it when the run ends before serving)."""

    specs: list[SourceSpec] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    listener: socket.socket | None = None

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()


def preflight(settings: Settings, references: Sequence[str], report: Path | None) -> Checked:
    """Every check that needs no model. PreflightError for a usage error (the report path, the store, the port);
    a source that cannot be used is left out and said in `problems`, so the others still run. When every source
    given fails, the store and the port are left alone: the run ends there."""
    if report is not None:
        check_report_path(report)
    checked = Checked()
    for reference in references:
        try:
            spec = parse_source(reference)
            check_screen(spec)
            what = sniff_file(spec.target) if spec.kind == "file" else None
            if what is not None and what != "playlist":  # by content: a photo named .mp4 is still a photo
                raise SourceError(still_image(spec.display, what))
        except SourceError as error:
            checked.problems.append(str(error))
        else:
            checked.specs.append(spec)
    if references and not checked.specs:
        return checked
    try:
        if settings.service.port is not None:  # first: a port in use leaves no store file behind
            checked.listener = open_listener(settings.service)
        open_writer(settings.store.db, settings.store.retention_days).close()
    except (StoreError, ServiceError) as error:
        checked.close()
        raise PreflightError(str(error)) from None
    return checked


def check_report_path(path: Path) -> None:
    """The report can be written at the end: its folder exists and takes a file (tried with a temporary file,
    since root writes through permission bits). Nothing is left behind and no folder is made."""
    if path.is_dir():
        raise PreflightError(f"--report {path} is a folder: give a file name, e.g. {path / 'report.json'}")
    folder = path.parent
    if not folder.is_dir():
        raise PreflightError(f"--report {path}: the folder {folder} does not exist (make it first, or give another)")
    try:
        if path.exists():
            with path.open("ab"):  # appends nothing: the file stays as it is until the report replaces it
                pass
        else:
            handle, probe = tempfile.mkstemp(prefix=".deepfake-stream-", suffix=".tmp", dir=folder)
            os.close(handle)
            os.unlink(probe)
    except OSError as error:
        raise PreflightError(f"--report {path}: cannot write in {folder}: {error.strerror or error}") from None
