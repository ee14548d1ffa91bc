"""Binary codec for protocol messages: scalar fields as JSON, tensors as raw bytes.

Frame layout (little endian)::

    b"SMSG" | u8 version | u16 len(type) | type (utf-8) | u32 len(header) | header (JSON)
    | u16 n_tensors | n_tensors x (u16 len(name) | name | u8 dtype | u8 ndim
                                   | ndim x u64 dim | [f32 scale, int8 only] | raw bytes)

An :class:`Int8Tensor` (int8 values and one float32 scale per tensor) is how compressed
embeddings and gradients travel; it decodes to float32 ``values * scale``.

No pickle anywhere: a frame can only describe scalars, lists, dicts and dense tensors,
so a message can never smuggle an arbitrary Python object (or a raw table) across.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from splitmesh.errors import ProtocolError

MAGIC = b"SMSG"
VERSION = 1

# Wire dtypes. Codes are part of the protocol: append, never renumber.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f2"),
    3: np.dtype("<f8"),
    4: np.dtype("<i8"),
    5: np.dtype("<i4"),
    6: np.dtype("i1"),
    7: np.dtype("u1"),
    8: np.dtype("?"),
}
_CODES = {dt: code for code, dt in DTYPES.items()}
QINT8 = 9  # an Int8Tensor: its f32 scale, then int8 values


@dataclasses.dataclass(frozen=True)
class Int8Tensor:
    """A float tensor quantized to int8 with one per-tensor scale: ``x ~ values * scale``."""

    values: np.ndarray  # int8
    scale: float

    @classmethod
    def quantize(cls, x: np.ndarray) -> Int8Tensor:
        peak = float(np.abs(x).max()) if x.size else 0.0
        # the scale travels as float32: round it now so every side dequantizes alike
        scale = float(np.float32(peak / 127.0)) if peak > 0 else 1.0
        q = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
        return cls(q, scale)

    def dequantize(self) -> np.ndarray:
        return self.values.astype(np.float32) * np.float32(self.scale)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape


_HEAD = struct.Struct("<4sBH")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_TENSOR = struct.Struct("<HBB")  # name length, dtype code, ndim
_F32 = struct.Struct("<f")


def wire_array(name: str, arr: np.ndarray) -> tuple[int, np.ndarray]:
    """A tensor's wire dtype code and its contiguous little-endian bytes' array.

    Only the plain numeric dtypes in DTYPES may travel (never ``object``, which could hide
    anything); every wire format checks through here.
    """
    arr = np.ascontiguousarray(arr)
    code = _CODES.get(arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype)
    if code is None:
        raise ProtocolError(
            f"tensor {name!r} has dtype {arr.dtype}, which has no wire encoding; "
            f"use one of {sorted(str(d) for d in _CODES)}"
        )
    return code, arr.astype(DTYPES[code], copy=False)


def encode_frame(
    type_name: str, header: dict[str, Any], tensors: dict[str, np.ndarray | Int8Tensor]
) -> bytes:
    """Encode one message; tensors must have a wire dtype."""
    tname = type_name.encode()
    hjson = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    parts = [_HEAD.pack(MAGIC, VERSION, len(tname)), tname, _U32.pack(len(hjson)), hjson]
    parts.append(_U16.pack(len(tensors)))
    for name, arr in tensors.items():
        bname = name.encode()
        if isinstance(arr, Int8Tensor):
            q = np.ascontiguousarray(arr.values, dtype=np.int8)
            parts += [_TENSOR.pack(len(bname), QINT8, q.ndim), bname]
            parts += [struct.pack(f"<{q.ndim}Q", *q.shape), _F32.pack(arr.scale), q.tobytes()]
            continue
        code, arr = wire_array(name, arr)
        parts.append(_TENSOR.pack(len(bname), code, arr.ndim))
        parts.append(bname)
        parts.append(struct.pack(f"<{arr.ndim}Q", *arr.shape))
        parts.append(arr.tobytes())
    return b"".join(parts)


def peek_frame_type(data: bytes) -> str:
    """The type name a frame says it carries ("?" when even that is unreadable)."""
    try:
        magic, _, tlen = _HEAD.unpack_from(data, 0)
        return bytes(data[_HEAD.size : _HEAD.size + tlen]).decode() if magic == MAGIC else "?"
    except (struct.error, UnicodeDecodeError):
        return "?"


def decode_frame(
    data: bytes, check: Callable[[str, str, str, tuple[int, ...]], None] | None = None
) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """Decode one frame into (type name, header, tensors). Tensors own their memory.

    ``check(type, field, dtype, shape)`` sees every tensor's declared shape before its
    memory is allocated, so a receiver refuses an oversized tensor without holding it.
    """
    view = memoryview(data)
    try:
        magic, version, tlen = _HEAD.unpack_from(view, 0)
        if magic != MAGIC:
            raise ProtocolError("not a splitmesh message (bad magic)")
        if version != VERSION:
            raise ProtocolError(f"message version {version} is not supported (want {VERSION})")
        off = _HEAD.size
        type_name = bytes(view[off : off + tlen]).decode()
        off += tlen
        (hlen,) = _U32.unpack_from(view, off)
        off += _U32.size
        header = json.loads(bytes(view[off : off + hlen]))
        off += hlen
        (n,) = _U16.unpack_from(view, off)
        off += _U16.size
        tensors: dict[str, np.ndarray] = {}
        for _ in range(n):
            nlen, code, ndim = _TENSOR.unpack_from(view, off)
            off += _TENSOR.size
            name = bytes(view[off : off + nlen]).decode()
            off += nlen
            shape = struct.unpack_from(f"<{ndim}Q", view, off)
            off += 8 * ndim
            scale = None
            if code == QINT8:
                (scale,) = _F32.unpack_from(view, off)
                off += _F32.size
            dtype = np.dtype("i1") if code == QINT8 else DTYPES.get(code)
            if dtype is None:
                raise ProtocolError(f"tensor {name!r} has unknown dtype code {code}")
            count = math.prod(shape)
            nbytes = count * dtype.itemsize
            if off + nbytes > len(view):
                raise ProtocolError(f"tensor {name!r} is truncated")
            if check is not None:
                check(type_name, name, dtype.str, tuple(shape))
            # copy: decoded tensors must be writable and must not pin the frame buffer
            arr = np.frombuffer(view, dtype=dtype, count=count, offset=off).reshape(shape)
            tensors[name] = arr.copy() if scale is None else Int8Tensor(arr, scale).dequantize()
            off += nbytes
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"malformed message: {exc}") from exc
    if off != len(view):
        raise ProtocolError(f"malformed message: {len(view) - off} trailing bytes")
    return type_name, header, tensors
