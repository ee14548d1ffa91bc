"""The one wire format of protocol messages, in process and over gRPC alike: a protobuf
``Envelope`` (transport/grpc/splitmesh.proto) holding the type name, the scalar fields as
a JSON object and each tensor as raw little-endian bytes with dtype and shape. A byte
count means the same in both transports.

An :class:`Int8Tensor` (int8 values and one float32 scale per tensor) is how compressed
embeddings and gradients travel; it decodes to float32 ``values * scale``.

No pickle anywhere: a frame can only describe scalars, lists, dicts and dense tensors,
so a message can never smuggle an arbitrary Python object (or a raw table) across.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from splitmesh.errors import ProtocolError
from splitmesh.transport.grpc import splitmesh_pb2 as pb

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
_BY_NAME = {dt.str: dt for dt in DTYPES.values()}  # how an envelope names a dtype
_WIRE_NAME = {dt: dt.str for dt in DTYPES.values() if dt.byteorder != ">"}  # sent as is
# made once: json.dumps / json.loads with options build a new coder at every call
_JSON_OUT = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_JSON_IN = json.JSONDecoder()


def wire_dtype(name: str) -> np.dtype:
    """The dtype an envelope names (``"<f4"``...): looked up, as np.dtype() costs
    microseconds per tensor."""
    dtype = _BY_NAME.get(name)
    return np.dtype(name) if dtype is None else dtype


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


Parts = tuple[str, dict[str, Any], dict[str, np.ndarray]]


def to_envelope(
    type_name: str, header: dict[str, Any], tensors: dict[str, np.ndarray | Int8Tensor]
) -> pb.Envelope:
    """One message's parts as an envelope; tensors must have a wire dtype."""
    env = pb.Envelope(type=type_name, header=_JSON_OUT.encode(header).encode())
    for name, arr in tensors.items():
        if isinstance(arr, Int8Tensor):
            q = np.ascontiguousarray(arr.values, dtype=np.int8)
            env.tensors.add(
                name=name, dtype=q.dtype.str, shape=q.shape, data=q.tobytes(), scale=arr.scale
            )
            continue
        wire = _WIRE_NAME.get(arr.dtype) if isinstance(arr, np.ndarray) else None
        if wire is None:  # not a native little-endian wire dtype: convert, or refuse
            code, arr = wire_array(name, arr)
            wire = DTYPES[code].str
        # tobytes() writes C order whatever the array's layout: no contiguous copy first
        env.tensors.add(name=name, dtype=wire, shape=arr.shape, data=arr.tobytes())
    return env


def from_envelope(
    env: pb.Envelope, check: Callable[[str, str, str, tuple[int, ...]], None] | None = None
) -> Parts:
    """An envelope's (type name, header, tensors); tensors own their memory.

    ``check(type, field, dtype, shape)`` sees every tensor's declared shape before its
    array is made, so a receiver refuses an oversized tensor without holding it twice.
    """
    kind, raw = env.type, env.header
    try:
        header = _JSON_IN.decode(raw.decode()) if raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed {kind[:40]} header: {exc}") from None
    tensors = {}
    for t in env.tensors:
        # each field read once: protobuf makes a new Python object at every read
        name, code, data, scale = t.name, t.dtype, t.data, t.scale
        dtype = _BY_NAME.get(code)
        if dtype is None:
            raise ProtocolError(f"tensor {name[:40]!r} has unknown dtype {code[:16]!r}")
        shape = tuple(t.shape)
        if len(data) != math.prod(shape) * dtype.itemsize:
            raise ProtocolError(f"tensor {name[:40]!r}: {len(data)} bytes do not fit shape {shape}")
        if check is not None:
            check(kind, name, code, shape)
        arr = np.frombuffer(data, dtype=dtype).reshape(shape)
        # copy: decoded tensors must be writable (the bytes object is read-only)
        tensors[name] = Int8Tensor(arr, scale).dequantize() if scale else arr.copy()
    return kind, header, tensors


def encode_frame(
    type_name: str, header: dict[str, Any], tensors: dict[str, np.ndarray | Int8Tensor]
) -> bytes:
    return to_envelope(type_name, header, tensors).SerializeToString()


def read_envelope(data: bytes) -> pb.Envelope:
    """The envelope a frame holds; a ProtocolError when it is not one."""
    try:
        return pb.Envelope.FromString(data)
    except DecodeError as exc:
        raise ProtocolError(f"malformed message: {exc}") from None


def decode_frame(
    data: bytes, check: Callable[[str, str, str, tuple[int, ...]], None] | None = None
) -> Parts:
    return from_envelope(read_envelope(data), check)
