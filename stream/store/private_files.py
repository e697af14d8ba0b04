"""Files and folders only this user can read: what the detector keeps (the store, evidence clips, uploads, reports)
holds faces and camera names, so each is created 0600 and each folder it makes 0700.

The modes are given when the file or folder is created (never by changing the process umask, which libraries
share); a umask can only take bits away. Folders and files that were there before keep their modes: they may be the
user's, shared on purpose.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def make_private_folder(folder: Path) -> None:
    """Create `folder` and any missing parents 0700 (the ones already there are left as they are); FileExistsError
    when a part of it exists as something other than a folder."""
    missing = []
    for part in (folder, *folder.parents):
        if part.is_dir():
            break
        missing.append(part)
    for part in reversed(missing):
        try:
            part.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            if not part.is_dir():
                raise


def create_private_file(path: Path) -> None:
    """Create `path` empty and 0600 if it is not there (a file already there is left alone), for a library that opens
    it by name afterwards (SQLite copies the database's mode to its -wal and -shm files)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))


def open_private(path: Path, exclusive: bool = True) -> BinaryIO:
    """`path` opened for binary writing, created 0600: `exclusive`, FileExistsError if it is there; else truncated,
    and a regular file tightened to 0600 (one of ours being rewritten; `/dev/stdout` is left alone)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    descriptor = os.open(path, flags, FILE_MODE)
    try:
        if not exclusive and stat.S_ISREG(os.fstat(descriptor).st_mode):  # not a terminal or a pipe
            os.fchmod(descriptor, FILE_MODE)
        return os.fdopen(descriptor, "wb")
    except BaseException:
        os.close(descriptor)
        raise
