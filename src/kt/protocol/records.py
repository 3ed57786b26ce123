"""Bulk-reply records as the clients' result dict (shared by the KT and TT binary codecs).

``text`` follows KT_BINARY's rule for stored bytes: UTF-8 text where they decode, the bytes
themselves where they do not (values written by other programs need not be text).
"""

from __future__ import annotations

from typing import Iterable, Tuple, Union


def text_or_bytes(data: bytes) -> Union[str, bytes]:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def records_dict(pairs: Iterable[Tuple[bytes, bytes]], text_keys: bool, text_values: bool) -> dict:
    """``{key: value}`` of ``(key, value)`` pairs, keys/values as text where asked (later
    duplicates win); one decode per record when everything is UTF-8, the per-item rule else."""
    if not (text_keys or text_values):
        return dict(pairs)
    try:
        if not text_values:
            return {k.decode("utf-8"): v for k, v in pairs}
        if not text_keys:
            return {k: v.decode("utf-8") for k, v in pairs}
        return {k.decode("utf-8"): v.decode("utf-8") for k, v in pairs}
    except UnicodeDecodeError:
        key = text_or_bytes if text_keys else bytes
        value = text_or_bytes if text_values else bytes
        return {key(k): value(v) for k, v in pairs}
