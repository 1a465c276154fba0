"""The SQLite database holds every conversation: its directory is 0700 and its files 0600, whether
the gateway creates them or finds them from an older install."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from buzzi.crypto import SecretBox
from buzzi.models import Company
from buzzi.store.sqlite import SQLiteStore


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual 022 umask, under which SQLite alone makes 0644 files in 0755 directories."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def write_something(path: Path, box: SecretBox) -> None:
    """Open, write (so the -wal and -shm files exist) and keep the store open while looking."""
    store = SQLiteStore(path, box)
    await store.open()
    try:
        await store.add(Company(id="c_1", name="One"))
        side = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
        assert all(p.exists() for p in side)
        assert [mode(p) for p in side] == [0o600, 0o600]
    finally:
        await store.close()


async def test_a_new_database_is_private(tmp_path: Path, box: SecretBox) -> None:
    database = tmp_path / "data" / "nested" / "buzzi.sqlite3"
    await write_something(database, box)
    assert mode(database) == 0o600
    assert mode(database.parent) == 0o700 and mode(database.parent.parent) == 0o700


async def test_files_from_an_older_install_are_tightened(tmp_path: Path, box: SecretBox) -> None:
    directory = tmp_path / "var"
    directory.mkdir(mode=0o755)
    database = directory / "buzzi.sqlite3"
    sqlite3.connect(database).execute("PRAGMA journal_mode=WAL").close()
    (directory / "secret_key").write_text("k" * 40)
    os.chmod(directory / "secret_key", 0o600)
    database.chmod(0o644)
    stale_wal = directory / "buzzi.sqlite3-wal"
    stale_wal.write_bytes(b"")
    stale_wal.chmod(0o666)
    await write_something(database, box)  # the -wal it finds is 0600 while the store runs
    assert (mode(directory), mode(database), mode(directory / "secret_key")) == (0o700, 0o600, 0o600)


async def test_a_shared_directory_keeps_its_mode_but_the_files_are_private(tmp_path: Path, box: SecretBox) -> None:
    shared = tmp_path / "project"
    shared.mkdir(mode=0o755)
    (shared / "README.md").write_text("someone else's file")
    database = shared / "buzzi.sqlite3"
    database.write_bytes(b"")
    database.chmod(0o644)
    await write_something(database, box)
    assert (mode(shared), mode(database), mode(shared / "README.md")) == (0o755, 0o600, 0o644)
