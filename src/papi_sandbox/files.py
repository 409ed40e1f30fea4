"""Files on the host: the data folder and the database files are its owner's alone.

Another local user who could write the data folder could replace the operator token or the
encryption key before a start; one who could read the database could copy the journal. So the
folder is 0700 and the files 0600 whatever the umask (docs/security.md).
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dir(path: Path, *, narrow: bool = False) -> None:
    """Create ``path`` (and missing parents) as a folder only its owner can enter (0700),
    whatever the umask. With ``narrow`` (the data folder, which holds the token and the keys),
    an existing folder more open than that is narrowed to 0700; a folder the operator merely
    named for a database file is left as it is. Raises OSError (e.g. a read-only file system)
    with the path in it."""
    if not path.is_dir():
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        path.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask; this is not
    elif narrow and path.stat().st_mode & 0o077:
        path.chmod(PRIVATE_DIR_MODE)


def make_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist, else narrow it to 0600; SQLite
    then gives its -wal and -shm files the same mode. Raises OSError with the path in it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(PRIVATE_FILE_MODE)
        return
    os.close(fd)
