"""Integrity checks of weight files: size in bytes and SHA-256 against the expected values.

Every check takes the exception class to raise, so each caller reports a bad file with its own error type; an
expected value of None skips that check.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["CHUNK_BYTES", "WeightIntegrityError", "check_file", "check_sha256", "check_size", "sha256_file"]

CHUNK_BYTES = 8 << 20


class WeightIntegrityError(ValueError):
    """A weight file whose size or SHA-256 is not the expected one."""


def sha256_file(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> str:
    """The hexadecimal SHA-256 of a file, read in chunks of ``chunk_bytes``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def check_size(
    what: str | Path, size: int, expected_bytes: int | None, fix: str, error: type[Exception] = WeightIntegrityError
) -> None:
    """Raise ``error`` naming ``what`` and the ``fix`` when ``size`` differs from ``expected_bytes``."""
    if expected_bytes is not None and size != expected_bytes:
        raise error(f"{what}: {size:,} bytes, expected {expected_bytes:,}; {fix}")


def check_sha256(
    what: str | Path, sha256: str, expected_sha256: str | None, fix: str, error: type[Exception] = WeightIntegrityError
) -> None:
    """Raise ``error`` naming ``what`` and the ``fix`` when ``sha256`` differs from ``expected_sha256``."""
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise error(f"{what}: SHA-256 {sha256} differs from the expected {expected_sha256}; {fix}")


def check_file(
    path: Path,
    expected_bytes: int | None,
    expected_sha256: str | None,
    fix: str,
    error: type[Exception] = WeightIntegrityError,
) -> str | None:
    """Check a weight file's size, then its SHA-256 (hashed only when one is expected); returns the hash when
    computed."""
    check_size(path, Path(path).stat().st_size, expected_bytes, fix, error)
    if expected_sha256 is None:
        return None
    sha256 = sha256_file(path)
    check_sha256(path, sha256, expected_sha256, fix, error)
    return sha256
