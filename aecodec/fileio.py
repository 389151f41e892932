"""Safe output: write to a temporary file beside the target, then rename, so that a failure or an
interrupt never leaves a partial file, and an existing file is only replaced when forced."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .errors import AecError


def check_writable(path: Path, force: bool) -> Path:
    """Refuse early: a directory, an existing file without force, a missing parent directory.
    Returns the parent directory."""
    if path.is_dir():
        raise AecError(f"{path}: is a directory")
    if path.exists() and not force:
        raise AecError(f"{path} exists; use -f to overwrite")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise AecError(f"{parent}: no such directory")
    return parent


def atomic_write_bytes(path: Path | str, data: bytes, force: bool = False) -> None:
    """Write data to path atomically. Without force, refuse if path exists (checked atomically)."""
    path = Path(path)
    parent = check_writable(path, force)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=parent)
    except OSError as e:
        raise AecError(f"cannot write to {parent}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path appeared meanwhile: never clobber
            except FileExistsError:
                raise AecError(f"{path} exists; use -f to overwrite") from None
            except OSError:
                # filesystems without hard links: fall back to a checked rename
                if path.exists():
                    raise AecError(f"{path} exists; use -f to overwrite") from None
                os.replace(tmp, path)
    except OSError as e:
        raise AecError(f"cannot write {path}: {e.strerror}") from None
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def write_stdout(data: bytes) -> None:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise AecError("stdout closed before all output was written") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
