"""Files written whole or not at all: a temporary file in the same folder, then ``os.replace``."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import BinaryIO

__all__ = ["replace_atomically"]


@contextlib.contextmanager
def replace_atomically(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Within: a binary file to write; on leaving, it replaces ``path`` in one rename.

    The file is a hidden temporary one in the folder of ``path`` (so the rename stays on one
    file system, where ``os.replace`` is atomic): whatever happens meanwhile (an exception, the
    process killed), ``path`` holds its old content or the new, never a part. On an exception
    the temporary file is removed; after a kill, a ``.NAME.*.tmp`` file may be left beside
    ``path``. The new file gets the permissions of a newly created one.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = pathlib.Path(tmp, "out.bin")
    ...     with replace_atomically(path) as handle:
    ...         _ = handle.write(b"new")
    ...     path.read_bytes(), sorted(p.name for p in path.parent.iterdir())
    (b'new', ['out.bin'])
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
    # O_EXCL: never another file of that name; mode 0o666 less the umask, as open() would give.
    handle = os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
