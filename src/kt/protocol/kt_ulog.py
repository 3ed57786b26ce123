"""Kyoto Tycoon update-log messages, as the replication stream carries them (sans-IO).

A message (protocol.md §A.7; ``cmdcommon.h: DBUpdateLogger``, ``kttimeddb.h: TimedDB``) is
``[origin sid:2][db index:2][op:1][...]`` with ``op`` one of

* ``0xA1`` set: ``[ksiz:varnum][vsiz:varnum][key][stored value]``; the stored value starts
  with the 5-byte big-endian absolute expiry (``0xFFFFFFFFFF`` = never) unless the database
  was opened with ``#ktopts=p``;
* ``0xA2`` remove: ``[ksiz:varnum][key]``;
* ``0xA5`` clear: nothing more.

``varnum`` is Kyoto Cabinet's big-endian base-128 number (high bit = more bytes follow).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

from kt.errors import ProtocolError

Buffer = Union[bytes, bytearray, memoryview]

OP_SET = 0xA1
OP_REMOVE = 0xA2
OP_CLEAR = 0xA5
OP_NAMES = {OP_SET: "set", OP_REMOVE: "remove", OP_CLEAR: "clear"}
XT_WIDTH = 5
XT_NEVER = (1 << 40) - 1

__all__ = ["UpdateMessage", "parse_update_message", "read_varnum", "split_stored_value", "OP_NAMES"]


def read_varnum(buf: Buffer, pos: int) -> Tuple[int, int]:
    """``(number, end)`` of the varnum at ``pos``; ProtocolError when it runs off the end."""
    value = 0
    size = len(buf)
    while pos < size:
        byte = buf[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos
    raise ProtocolError("Kyoto Tycoon update-log message: a size runs past the end")


class UpdateMessage(NamedTuple):
    """One decoded update: ``stored`` is the value as the database keeps it (xt header first)."""

    sid: int
    db: int
    op: str
    key: Optional[bytes]
    stored: Optional[bytes]


def parse_update_message(message: Buffer) -> UpdateMessage:
    """Decode one update-log message (the body of a replication record)."""
    if len(message) < 5:
        raise ProtocolError(f"Kyoto Tycoon update-log message of {len(message)} bytes is too short")
    sid = (message[0] << 8) | message[1]
    db = (message[2] << 8) | message[3]
    op = message[4]
    if op == OP_CLEAR:
        return UpdateMessage(sid, db, "clear", None, None)
    if op == OP_SET:
        ksiz, pos = read_varnum(message, 5)
        vsiz, pos = read_varnum(message, pos)
    elif op == OP_REMOVE:
        ksiz, pos = read_varnum(message, 5)
        vsiz = 0
    else:
        raise ProtocolError(f"Kyoto Tycoon update-log message has unknown operation {op:#04x}")
    end = pos + ksiz + vsiz
    if end != len(message):
        raise ProtocolError("Kyoto Tycoon update-log message sizes do not match its length")
    key = bytes(message[pos : pos + ksiz])
    if op == OP_REMOVE:
        return UpdateMessage(sid, db, "remove", key, None)
    return UpdateMessage(sid, db, "set", key, bytes(message[pos + ksiz : end]))


def split_stored_value(stored: bytes) -> Tuple[bytes, Optional[int]]:
    """``(user value, absolute expiry or None)`` of a stored value with TimedDB's xt header."""
    if len(stored) < XT_WIDTH:
        raise ProtocolError("Kyoto Tycoon stored value is shorter than its expiry header")
    xt = int.from_bytes(stored[:XT_WIDTH], "big")
    return stored[XT_WIDTH:], (None if xt >= XT_NEVER else xt)
