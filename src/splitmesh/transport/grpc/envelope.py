"""Messages <-> protobuf envelopes. Tensors travel as raw bytes with dtype and shape."""

from __future__ import annotations

import json
import math

import numpy as np

from splitmesh.errors import ProtocolError
from splitmesh.transport.base import TensorCheck
from splitmesh.transport.codec import DTYPES, Int8Tensor, wire_array
from splitmesh.transport.grpc import splitmesh_pb2 as pb
from splitmesh.transport.messages import Message, from_parts, to_parts

# Only plain numeric dtypes may cross; never "object", which could hide anything.
_ALLOWED = {dt.str: dt for dt in DTYPES.values()}


def to_envelope(msg: Message) -> pb.Envelope:
    type_name, header, tensors = to_parts(msg)
    env = pb.Envelope(
        type=type_name, header=json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    )
    for name, arr in tensors.items():
        if isinstance(arr, Int8Tensor):
            q = np.ascontiguousarray(arr.values, dtype=np.int8)
            env.tensors.add(
                name=name, dtype=q.dtype.str, shape=q.shape, data=q.tobytes(), scale=arr.scale
            )
            continue
        code, arr = wire_array(name, arr)
        env.tensors.add(name=name, dtype=DTYPES[code].str, shape=arr.shape, data=arr.tobytes())
    return env


def from_envelope(env: pb.Envelope, check: TensorCheck | None = None) -> Message:
    """The message an envelope carries; ``check`` sees each tensor's shape first."""
    try:
        header = json.loads(env.header) if env.header else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed {env.type} header: {exc}") from exc
    tensors = {}
    for t in env.tensors:
        dtype = _ALLOWED.get(t.dtype)
        if dtype is None:
            raise ProtocolError(f"tensor {t.name!r} has unknown dtype {t.dtype!r}")
        shape = tuple(t.shape)
        if len(t.data) != math.prod(shape) * dtype.itemsize:
            raise ProtocolError(f"tensor {t.name!r}: {len(t.data)} bytes do not fit shape {shape}")
        if check is not None:
            check(env.type, t.name, dtype.str, shape)
        arr = np.frombuffer(t.data, dtype=dtype).reshape(shape)
        if t.scale:
            tensors[t.name] = Int8Tensor(arr, t.scale).dequantize()
        else:
            tensors[t.name] = arr.copy()  # writable, and not pinning the protobuf buffer
    return from_parts(env.type, header, tensors)
