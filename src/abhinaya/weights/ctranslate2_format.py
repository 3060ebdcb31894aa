"""Reader (and a small writer) for the CTranslate2 ``model.bin`` binary format.

Layout, all integers little-endian::

    uint32  binary version (2 .. 6 are read; 6 is written)
    string  spec name, e.g. "WhisperSpec"          (version >= 2)
    uint32  spec revision                          (version >= 2)
    uint32  number of variables, then for each:
        string  name, e.g. "encoder/layer_0/self_attention/linear_0/weight"
        uint8   rank, then rank x uint32 dimensions
        uint8   dtype id (version >= 4; see ``DTYPE_NAMES``)
        uint32  number of bytes
        bytes   the data, row-major
    uint32  number of aliases, then (alias, target) string pairs   (version >= 3)

A string is a uint16 byte count that includes a trailing NUL, then the UTF-8
bytes and the NUL. Before version 4 a variable stores its item size (uint8)
and its element count (uint32) in place of the dtype id and byte count.

Scalars (rank 0) carry settings such as ``encoder/num_heads``; strings are
stored as int8 arrays of their UTF-8 bytes. Values keep their stored dtype
(float16 stays float16); bfloat16, which numpy lacks, is widened to float32.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Mapping

import numpy as np

SUPPORTED_BINARY_VERSIONS = range(2, 7)
WRITTEN_BINARY_VERSION = 6

DTYPE_NAMES: tuple[str, ...] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_ITEM_SIZE_DTYPES = {4: "float32", 2: "int16", 1: "int8"}


class CTranslate2FormatError(ValueError):
    """A ``model.bin`` that is truncated, malformed or of an unsupported version."""


@dataclass
class CTranslate2Model:
    """Contents of a ``model.bin``.

    ``variables`` maps each stored name to its array; ``aliases`` maps an alias
    name to the stored variable it stands for.
    """

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)
    binary_version: int = WRITTEN_BINARY_VERSION

    def resolve(self, name: str) -> np.ndarray:
        """The array behind ``name``, following an alias if it is one."""
        if name in self.variables:
            return self.variables[name]
        if name in self.aliases:
            return self.variables[self.aliases[name]]
        raise KeyError(name)


class _Reader:
    def __init__(self, stream: BinaryIO, source: str):
        self.stream = stream
        self.source = source

    def _take(self, n: int, what: str) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise CTranslate2FormatError(
                f"{self.source}: file ends early while reading {what} (wanted {n} bytes, got {len(data)})"
            )
        return data

    def uint(self, fmt: str, what: str) -> int:
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self._take(size, what))[0]

    def string(self, what: str) -> str:
        length = self.uint("H", what)
        raw = self._take(length, what)
        if length == 0 or raw[-1] != 0:
            raise CTranslate2FormatError(f"{self.source}: {what} is not a NUL-terminated string")
        return raw[:-1].decode("utf-8")

    def data(self, n: int, what: str) -> bytearray:
        buffer = bytearray(n)
        got = self.stream.readinto(buffer)
        if got != n:
            raise CTranslate2FormatError(
                f"{self.source}: file ends early while reading {what} (wanted {n} bytes, got {got})"
            )
        return buffer


def _to_array(buffer: bytearray, dtype_name: str, shape: tuple[int, ...], name: str, source: str) -> np.ndarray:
    storage = "uint16" if dtype_name == "bfloat16" else dtype_name
    itemsize = np.dtype(storage).itemsize
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count * itemsize != len(buffer):
        raise CTranslate2FormatError(
            f"{source}: variable {name!r} holds {len(buffer)} bytes, but shape {list(shape)} of {dtype_name} "
            f"needs {count * itemsize}"
        )
    array = np.frombuffer(buffer, dtype=np.dtype(storage).newbyteorder("<")).reshape(shape)
    if dtype_name == "bfloat16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.dtype(storage), copy=False)


def read_ctranslate2_model(path: str | Path) -> CTranslate2Model:
    """Parse ``path`` (a ``model.bin`` file, or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no CTranslate2 model.bin here")
    with open(path, "rb") as stream:
        return read_ctranslate2_stream(stream, source=str(path))


def read_ctranslate2_stream(stream: BinaryIO, *, source: str = "<stream>") -> CTranslate2Model:
    """Parse a ``model.bin`` from an open binary stream; the whole stream must be consumed."""
    r = _Reader(stream, source)
    version = r.uint("I", "binary version")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise CTranslate2FormatError(
            f"{source}: binary version {version} is not supported (supported: "
            f"{SUPPORTED_BINARY_VERSIONS.start}..{SUPPORTED_BINARY_VERSIONS.stop - 1}); is this a CTranslate2 model.bin?"
        )
    spec, revision = "", 1
    if version >= 2:
        spec = r.string("spec name")
        revision = r.uint("I", "spec revision")

    variables: dict[str, np.ndarray] = {}
    for index in range(r.uint("I", "variable count")):
        name = r.string(f"name of variable {index}")
        rank = r.uint("B", f"rank of {name!r}")
        shape = tuple(r.uint("I", f"shape of {name!r}") for _ in range(rank))
        if version >= 4:
            type_id = r.uint("B", f"dtype of {name!r}")
            if type_id >= len(DTYPE_NAMES):
                raise CTranslate2FormatError(f"{source}: variable {name!r} has unknown dtype id {type_id}")
            dtype_name = DTYPE_NAMES[type_id]
            num_bytes = r.uint("I", f"size of {name!r}")
        else:
            item_size = r.uint("B", f"item size of {name!r}")
            if item_size not in _ITEM_SIZE_DTYPES:
                raise CTranslate2FormatError(f"{source}: variable {name!r} has unknown item size {item_size}")
            dtype_name = _ITEM_SIZE_DTYPES[item_size]
            num_bytes = r.uint("I", f"size of {name!r}") * item_size
        if name in variables:
            raise CTranslate2FormatError(f"{source}: variable {name!r} is stored twice")
        buffer = r.data(num_bytes, f"data of {name!r}")
        variables[name] = _to_array(buffer, dtype_name, shape, name, source)

    aliases: dict[str, str] = {}
    if version >= 3:
        for index in range(r.uint("I", "alias count")):
            alias = r.string(f"alias {index}")
            target = r.string(f"target of alias {alias!r}")
            if target not in variables:
                raise CTranslate2FormatError(f"{source}: alias {alias!r} points to missing variable {target!r}")
            aliases[alias] = target

    trailing = stream.read(1)
    if trailing:
        raise CTranslate2FormatError(f"{source}: unexpected bytes after the last alias")
    return CTranslate2Model(spec=spec, revision=revision, variables=variables, aliases=aliases, binary_version=version)


def _encode_string(text: str) -> bytes:
    raw = text.encode("utf-8") + b"\0"
    if len(raw) > 0xFFFF:
        raise ValueError(f"string too long for the format: {text[:40]!r}...")
    return struct.pack("<H", len(raw)) + raw


def _stored_dtype(array: np.ndarray, name: str) -> int:
    dtype_name = array.dtype.name
    if dtype_name == "float64":
        dtype_name = "float32"
    elif dtype_name == "bool":
        dtype_name = "int8"
    if dtype_name not in DTYPE_NAMES or dtype_name == "bfloat16":
        raise ValueError(f"variable {name!r}: dtype {array.dtype} cannot be written (use one of {DTYPE_NAMES[:5]})")
    return DTYPE_NAMES.index(dtype_name)


def write_ctranslate2_model(
    path: str | Path,
    spec: str,
    revision: int,
    variables: Mapping[str, np.ndarray | np.generic | int | float | bool | str],
    aliases: Mapping[str, str] | None = None,
) -> Path:
    """Write a version-6 ``model.bin``. Python ints become int32 scalars, floats
    float32, bools int8 and strings int8 byte arrays, as CTranslate2 stores them.

    Used to build small models in this layout for tests.
    """
    path = Path(path)
    aliases = dict(aliases or {})
    with open(path, "wb") as out:
        out.write(struct.pack("<I", WRITTEN_BINARY_VERSION))
        out.write(_encode_string(spec))
        out.write(struct.pack("<I", revision))
        out.write(struct.pack("<I", len(variables)))
        for name, value in variables.items():
            if isinstance(value, str):
                array = np.frombuffer(value.encode("utf-8"), dtype=np.int8)
            elif isinstance(value, bool):
                array = np.asarray(value, dtype=np.int8)
            elif isinstance(value, int):
                array = np.asarray(value, dtype=np.int32)
            elif isinstance(value, float):
                array = np.asarray(value, dtype=np.float32)
            else:
                array = np.asarray(value)
            type_id = _stored_dtype(array, name)
            array = np.asarray(array, dtype=np.dtype(DTYPE_NAMES[type_id]).newbyteorder("<"))
            out.write(_encode_string(name))
            out.write(struct.pack("<B", array.ndim))
            for dim in array.shape:
                out.write(struct.pack("<I", dim))
            out.write(struct.pack("<B", type_id))
            out.write(struct.pack("<I", array.nbytes))
            out.write(array.tobytes())
        out.write(struct.pack("<I", len(aliases)))
        for alias, target in aliases.items():
            if target not in variables:
                raise ValueError(f"alias {alias!r} points to missing variable {target!r}")
            out.write(_encode_string(alias))
            out.write(_encode_string(target))
    return path
