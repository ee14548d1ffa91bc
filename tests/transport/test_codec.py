import numpy as np
import pytest

from splitmesh.errors import ProtocolError
from splitmesh.transport.codec import DTYPES, decode_frame, encode_frame
from splitmesh.transport.messages import Ack, Embedding, Forward, HeadReply, decode, encode


@pytest.mark.parametrize("dtype", [d.str for d in DTYPES.values()])
def test_every_wire_dtype_round_trips(dtype):
    a = (np.arange(24).reshape(2, 3, 4) % 2).astype(dtype)
    _, _, tensors = decode_frame(encode_frame("X", {}, {"a": a}))
    assert tensors["a"].dtype == a.dtype and tensors["a"].shape == a.shape
    np.testing.assert_array_equal(tensors["a"], a)


def test_message_round_trip_keeps_values_and_types():
    msg = Forward("train", np.array([3, 1, 2], dtype=np.int64), step=7, train=True)
    back = decode(encode(msg))
    assert isinstance(back, Forward) and back.step == 7 and back.train is True
    np.testing.assert_array_equal(back.positions, msg.positions)


def test_float16_halves_the_tensor_bytes():
    x = np.random.default_rng(0).normal(size=(256, 16)).astype(np.float32)
    b32 = len(encode(Embedding(0, x)))
    b16 = len(encode(Embedding(0, x.astype(np.float16))))
    assert 0 <= (b32 - b16) - 256 * 16 * 2 <= 2  # the tensor's length prefix shrinks too


def test_in_process_bytes_are_the_grpc_envelope():
    from splitmesh.transport.messages import envelope, open_envelope

    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    msg = Embedding(3, x)
    data = encode(msg)
    assert data == envelope(msg).SerializeToString()
    assert len(data) == envelope(msg).ByteSize()
    back = open_envelope(envelope(msg))
    assert back.step == 3 and np.array_equal(back.values, x)


def test_optional_tensor_may_be_absent():
    back = decode(encode(HeadReply(loss=0.5)))
    assert back.grad is None and back.loss == 0.5


@pytest.mark.parametrize(
    "data",
    [b"", b"PKL\x00", encode(Ack())[:-1], encode(Ack()) + b"\x00", b"\x80\x04\x95" + b"\x00" * 20],
)
def test_malformed_frames_are_protocol_errors(data):
    with pytest.raises(ProtocolError):
        decode(data)


def test_unsupported_dtype_is_refused():
    with pytest.raises(ProtocolError, match="no wire encoding"):
        encode_frame("X", {}, {"a": np.array(["text"])})


def test_unknown_message_type_is_refused():
    with pytest.raises(ProtocolError, match="unknown message type"):
        decode(encode_frame("Pickle", {}, {}))
