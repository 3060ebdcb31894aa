"""Size and SHA-256 checks of weight files."""

import hashlib

import pytest

from abhinaya.weights.integrity import (
    WeightIntegrityError,
    check_file,
    check_sha256,
    check_size,
    sha256_file,
)


class OwnError(ValueError):
    pass


def test_sha256_file_reads_in_chunks(tmp_path):
    data = bytes(range(256)) * 100
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    assert sha256_file(path, chunk_bytes=1000) == hashlib.sha256(data).hexdigest()


def test_check_file_checks_size_then_hash(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    assert check_file(path, 7, digest, "reinstall") == digest
    assert check_file(path, None, None, "reinstall") is None
    with pytest.raises(WeightIntegrityError, match=r"w.bin: 7 bytes, expected 8; reinstall"):
        check_file(path, 8, digest, "reinstall")
    with pytest.raises(OwnError, match=r"SHA-256 .* differs from the expected 0{64}; run prepare"):
        check_file(path, 7, "0" * 64, "run prepare", OwnError)


def test_single_checks_skip_when_nothing_is_expected():
    check_size("parts", 10, None, "fix")
    check_sha256("parts", "ab", None, "fix")
    with pytest.raises(OwnError, match="parts: 1,000 bytes, expected 10; fix"):
        check_size("parts", 1000, 10, "fix", OwnError)
