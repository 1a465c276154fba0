"""File modes of the SQLite database: it holds every conversation and the (encrypted) channel
credentials, so only the gateway's own user may read it.

The directory is created 0700 and the database 0600 before SQLite first opens it; SQLite creates
its -wal and -shm files with the mode of the database file, so they are 0600 too. Files from an
older install are tightened at start. An existing directory is tightened only when it holds
nothing but the gateway's own files (the default `var/`): a database put in a shared directory
(a home or project directory) must not change who can list that directory, so there it is only
logged; the files themselves are private either way.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("buzzi.store")

DIR_MODE = 0o700
FILE_MODE = 0o600
SIDE_FILES = ("-wal", "-shm", "-journal")
# Other files the gateway itself keeps in its data directory (buzzi/runtime.py).
OWN_FILES = frozenset({"secret_key"})


def make_private(database: Path) -> None:
    """Create `database`'s directory and an empty database file privately, or tighten what exists."""
    _make_dirs(database.parent)
    _tighten_dir(database.parent, database.name)
    fd = os.open(database, os.O_RDWR | os.O_CREAT, FILE_MODE)  # an empty file is an empty database
    os.close(fd)
    for path in (database, *(database.with_name(database.name + s) for s in SIDE_FILES)):
        _restrict(path, FILE_MODE)


def _make_dirs(directory: Path) -> None:
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=DIR_MODE, exist_ok=True)  # the umask can only take bits away from 0700


def _tighten_dir(directory: Path, database_name: str) -> None:
    mode = stat.S_IMODE(directory.stat().st_mode)
    if not mode & 0o077:
        return
    names = [entry.name for entry in directory.iterdir()]
    if all(name.startswith(database_name) or name in OWN_FILES for name in names):
        _restrict(directory, DIR_MODE)
    else:
        log.warning("the SQLite database's directory %s is shared (mode %o): the database files are private "
                    "(0600), but their names can be listed", directory, mode)


def _restrict(path: Path, mode: int) -> None:
    """chmod `path` when others have any access to it; a file owned by someone else is logged."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
        if current & 0o077:
            path.chmod(mode)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("cannot make %s private: %s", path, exc.strerror)
