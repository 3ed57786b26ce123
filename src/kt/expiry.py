"""The one place that turns a caller's ``expire_time`` into Kyoto Tycoon's wire ``xt``.

On the wire (binary ``set_bulk`` and the HTTP ``xt`` parameter alike) a positive ``xt`` is
seconds from now, a negative one is an absolute Unix time (``-epoch``), and
``NO_EXPIRY_XT`` (INT64_MAX) means never.  Callers may pass:

* ``None``: never expires;
* an ``int``/``float``: seconds from now (> 0; fractions round up, so a record never
  expires earlier than asked);
* a ``datetime.timedelta``: seconds from now, likewise;
* a ``datetime.datetime``: that absolute moment.  A naive datetime is taken as UTC.
"""

from __future__ import annotations

import datetime
import math
from typing import Optional, Union

NO_EXPIRY_XT = 0x7FFFFFFFFFFFFFFF
"""What Kyoto Tycoon's own client sends for "never expires"."""

XT_MAX = (1 << 40) - 1
"""The largest stored expiry; the server reports it for records that never expire."""

ExpireTime = Union[None, int, float, datetime.datetime, datetime.timedelta]


def _relative(seconds: float) -> int:
    if seconds != seconds or seconds in (math.inf, -math.inf):
        raise ValueError(f"expire_time must be a finite number of seconds, not {seconds!r}")
    if seconds <= 0:
        raise ValueError(
            f"expire_time must be a positive number of seconds, not {seconds!r} "
            "(use None for no expiry, or a datetime for an absolute time)"
        )
    return min(math.ceil(seconds), XT_MAX)


def to_xt(expire_time: ExpireTime) -> Optional[int]:
    """Return the wire ``xt`` for ``expire_time``, or ``None`` when the record never expires."""
    if expire_time is None:
        return None
    if isinstance(expire_time, bool):
        raise TypeError("expire_time must be seconds, a datetime or a timedelta, not a bool")
    if isinstance(expire_time, (int, float)):
        return _relative(expire_time)
    if isinstance(expire_time, datetime.timedelta):
        return _relative(expire_time.total_seconds())
    if isinstance(expire_time, datetime.datetime):
        if expire_time.tzinfo is None:
            expire_time = expire_time.replace(tzinfo=datetime.timezone.utc)
        epoch = math.ceil(expire_time.timestamp())
        if epoch <= 0:
            raise ValueError(f"expire_time {expire_time.isoformat()} is not after 1970-01-01")
        return -min(epoch, XT_MAX)
    raise TypeError(
        f"expire_time must be None, seconds (int/float), a datetime or a timedelta, "
        f"not {type(expire_time).__name__}"
    )


def to_binary_xt(expire_time: ExpireTime) -> int:
    """``to_xt`` for the binary protocol, where "never" must be sent explicitly."""
    xt = to_xt(expire_time)
    return NO_EXPIRY_XT if xt is None else xt


def from_stored_xt(xt: int) -> Optional[datetime.datetime]:
    """Turn an absolute xt reported by the server into an aware UTC datetime (None = never)."""
    if xt is None or xt < 0 or xt >= XT_MAX:
        return None
    return datetime.datetime.fromtimestamp(xt, tz=datetime.timezone.utc)


__all__ = ["NO_EXPIRY_XT", "XT_MAX", "ExpireTime", "to_xt", "to_binary_xt", "from_stored_xt"]
