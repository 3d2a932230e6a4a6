"""Owner-only files and folders: trading records are nobody else's business.

Databases, reports, trades.csv, decision logs, sweep outputs and the cache
folder are created readable by their owner only (files 0600, folders 0700),
whatever the umask says. The mode is passed to ``open``/``mkdir`` at creation,
so the file is never readable by others even for an instant (creating it with
the umask's 0644 and ``chmod`` afterwards was rejected for that window); a
file we overwrite is ``chmod``-ed too, since ``O_CREAT``'s mode only applies to
new files. Folders that already exist are left as they are: they are the
user's (e.g. a shared ``--out`` folder chosen on purpose), except the ones
this module is asked to make private explicitly (``private_dir(...,
tighten=True)``, the cache folder).

SQLite creates a database's ``-wal`` and ``-shm`` files with the database
file's own mode, so creating the database file 0600 first covers them.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700

PathLike = str | os.PathLike[str]


def private_dir(path: PathLike, tighten: bool = False) -> Path:
    """Create folder ``path`` and every missing parent with mode 0700; returns it.

    Args:
        path: the folder.
        tighten: also ``chmod 0700`` the folder itself when it already exists
            (used for our own cache folder, never for a folder the user named).
    """
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for p in reversed(missing):
        try:
            os.mkdir(p, DIR_MODE)  # the umask can only remove bits from 0700
        except FileExistsError:  # made by another process meanwhile
            pass
        os.chmod(p, DIR_MODE)  # an umask of 0o100 or so would leave it unusable otherwise
    if tighten and path.is_dir() and (path.stat().st_mode & 0o777) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def create_private_file(path: PathLike) -> bool:
    """Create ``path`` as an empty 0600 file unless it exists; returns whether it was created.

    Used before SQLite opens a new database, so the database (and its WAL)
    is owner-only from the first byte.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def write_private_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` as a 0600 file, replacing its content."""
    write_private_bytes(path, text.encode("utf-8"))


def write_private_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` as a 0600 file, replacing its content."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an existing file keeps its old mode under O_CREAT
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
