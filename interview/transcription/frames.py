"""The frames between the pass runner and its child: [4-byte length][JSON header][4-byte
length][payload]. Standard library only: the child imports it before it lowers its priority."""

from __future__ import annotations

import json
import struct
from typing import IO, Any

LENGTH = struct.Struct("<I")


def frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    encoded = json.dumps(header).encode()
    return LENGTH.pack(len(encoded)) + encoded + LENGTH.pack(len(payload)) + payload


def read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def read_frame(stream: IO[bytes]) -> tuple[dict[str, Any], bytes]:
    (size,) = LENGTH.unpack(read_exactly(stream, LENGTH.size))
    header = json.loads(read_exactly(stream, size))
    (size,) = LENGTH.unpack(read_exactly(stream, LENGTH.size))
    return header, read_exactly(stream, size)
