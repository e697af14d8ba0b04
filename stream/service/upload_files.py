"""Uploaded videos on disk: each kept under a name of the service's choosing with one fixed suffix (never the
client's, which FFmpeg would take as a hint of the format), and deleted past their retention or past the disk quota,
oldest first, each deletion logged in one line."""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from collections.abc import Collection
from pathlib import Path

log = logging.getLogger("deepfake_stream")

SUFFIX = ".video"
DAY_S = 86400.0
MB = 1024 * 1024
RECENT_S = 120.0  # a file written to this recently may still be arriving: the quota leaves it alone
# Only what the service itself wrote is ever deleted (with today's suffix, or an older version's client suffix).
_OURS = re.compile(r"upload-[0-9a-f]{8}(\.[a-z0-9]{1,8})?")


class UploadFiles:
    """The uploads folder: where a new upload goes, and `prune()` for the retention and the quota."""

    def __init__(self, directory: Path, retention_days: float | None, quota_mb: float | None) -> None:
        self.directory = directory
        self.retention_days = retention_days
        self.quota_mb = quota_mb

    def path_for(self, upload_id: str) -> Path:
        return self.directory / f"{upload_id}{SUFFIX}"

    def prune(self, keep: Collection[Path] = (), now: float | None = None) -> list[Path]:
        """Delete uploads older than the retention, then the oldest until the rest fit the quota; never one in
        `keep` (being scored or waiting). The paths deleted, oldest first."""
        now = time.time() if now is None else now
        kept = {os.path.abspath(path) for path in keep}
        files = sorted((entry for entry in self._files() if os.path.abspath(entry[2]) not in kept), key=lambda e: e[0])
        deleted: list[Path] = []
        if self.retention_days is not None:
            cutoff = now - self.retention_days * DAY_S
            for mtime, size, path in [entry for entry in files if entry[0] < cutoff]:
                age = (now - mtime) / DAY_S
                why = f"{age:.1f} days old, past service.upload_retention_days ({self.retention_days:g})"
                if self._delete(path, size, why):
                    deleted.append(path)
            files = [entry for entry in files if entry[2] not in deleted]
        if self.quota_mb is not None:
            total = sum(size for _, size, _ in self._files())
            limit = self.quota_mb * MB
            for mtime, size, path in files:
                if total <= limit:
                    break
                if now - mtime < RECENT_S:
                    continue
                why = f"the uploads took {total / MB:.1f} MB, over service.upload_quota_mb ({self.quota_mb:g})"
                if self._delete(path, size, why):
                    deleted.append(path)
                    total -= size
        return deleted

    def _files(self) -> list[tuple[float, int, Path]]:
        """(modified, size, path) of each upload file the service wrote (regular files only: never a link)."""
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return []
        found = []
        for entry in entries:
            if not _OURS.fullmatch(entry.name):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((info.st_mtime, info.st_size, Path(entry.path)))
        return found

    @staticmethod
    def _delete(path: Path, size: int, why: str) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as error:
            log.warning("uploads: could not delete %s: %s", path, error.strerror or error)
            return False
        log.info("uploads: deleted %s (%.1f MB): %s", path.name, size / MB, why)
        return True
