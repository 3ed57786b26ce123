"""POSIX extended regular expressions exactly as Kyoto Cabinet's ``kc::Regex`` runs them.

The real servers call the C library's ``regcomp``/``regexec`` in the C locale (neither calls
``setlocale``), on C strings: a pattern or a subject ends at its first NUL byte, and ``.``
matches any byte but NUL.  Python's ``re`` differs in syntax (``\\d``, lazy quantifiers,
``(?...)``) and in what it rejects, so the same libc functions are called here through ctypes,
inside a per-thread C locale (``uselocale``) whatever locale this process runs in.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Optional

REG_EXTENDED = 1
REG_ICASE = 2
REG_NOSUB = 8
REG_NOTBOL = 1
_LC_ALL_MASK = 0x1FBF  # glibc: every category's bit but LC_ALL's
_REGEX_T_SIZE = 256  # glibc's regex_t is 64 bytes; room to spare


class _RegMatch(ctypes.Structure):
    _fields_ = [("rm_so", ctypes.c_int), ("rm_eo", ctypes.c_int)]


_libc: Optional[ctypes.CDLL] = None
_c_locale = None
_init_lock = threading.Lock()


def _lib() -> ctypes.CDLL:
    global _libc, _c_locale
    if _libc is None:
        with _init_lock:
            if _libc is None:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
                libc.regcomp.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
                libc.regcomp.restype = ctypes.c_int
                match_array = ctypes.POINTER(_RegMatch)
                libc.regexec.argtypes = [
                    ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, match_array, ctypes.c_int,
                ]
                libc.regexec.restype = ctypes.c_int
                libc.regfree.argtypes = [ctypes.c_void_p]
                libc.regfree.restype = None
                libc.newlocale.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p]
                libc.newlocale.restype = ctypes.c_void_p
                libc.uselocale.argtypes = [ctypes.c_void_p]
                libc.uselocale.restype = ctypes.c_void_p
                _c_locale = libc.newlocale(_LC_ALL_MASK, b"C", None)
                _libc = libc
    return _libc


def _c_string(data: bytes) -> bytes:
    """What C sees of ``data``: everything before the first NUL."""
    end = data.find(b"\0")
    return data if end < 0 else data[:end]


class PosixRegex:
    """One compiled pattern (``kc::Regex``); ``ValueError`` when ``regcomp`` rejects it."""

    def __init__(self, pattern: bytes, ignore_case: bool = False, match_only: bool = False) -> None:
        lib = _lib()
        pattern = _c_string(pattern)
        self.nosub = match_only or not pattern
        flags = REG_EXTENDED | (REG_ICASE if ignore_case else 0) | (REG_NOSUB if self.nosub else 0)
        self._buf = ctypes.create_string_buffer(_REGEX_T_SIZE)
        old = lib.uselocale(_c_locale)
        try:
            rc = lib.regcomp(self._buf, pattern, flags)
        finally:
            lib.uselocale(old)
        if rc != 0:
            self._buf = None
            raise ValueError(f"invalid POSIX regular expression {pattern!r} (regcomp error {rc})")

    def __del__(self) -> None:
        if getattr(self, "_buf", None) is not None and _libc is not None:
            _libc.regfree(self._buf)
            self._buf = None

    def _exec(self, subject: bytes, nmatch: int, eflags: int = 0):
        lib = _lib()
        subs = (_RegMatch * max(nmatch, 1))()
        old = lib.uselocale(_c_locale)
        try:
            rc = lib.regexec(self._buf, subject, nmatch, subs, eflags)
        finally:
            lib.uselocale(old)
        return subs if rc == 0 else None

    def search(self, text: bytes) -> bool:
        """``Regex::match``: does the pattern occur in ``text`` (up to its first NUL)?"""
        return self._exec(_c_string(text), 0 if self.nosub else 1) is not None

    def replace(self, text: bytes, alt: bytes) -> bytes:
        """``Regex::replace``: every match replaced by ``alt`` (``$0``-``$9``, ``$&`` expand)."""
        text, alt = _c_string(text), _c_string(alt)
        if self.nosub or self._exec(text, 256) is None:
            return text
        out = bytearray()
        pos = 0
        first = True
        while pos < len(text):
            subs = self._exec(text[pos:], 10, 0 if first else REG_NOTBOL)
            if subs is None:
                break
            first = False
            so, eo = subs[0].rm_so, subs[0].rm_eo
            if so == -1:
                break
            out += text[pos:pos + so]
            i = 0
            while i < len(alt):
                c = alt[i]
                if c == 0x24 and i + 1 < len(alt):  # '$'
                    nxt = alt[i + 1]
                    if 0x30 <= nxt <= 0x39:
                        sub = subs[nxt - 0x30]
                        if sub.rm_so != -1 and sub.rm_eo != -1:
                            out += text[pos + sub.rm_so:pos + sub.rm_eo]
                    elif nxt == 0x26:  # '&'
                        out += text[pos + so:pos + eo]
                    else:
                        out.append(nxt)
                    i += 2
                    continue
                if c != 0x24:
                    out.append(c)
                i += 1
            pos += eo
            if eo < 1:
                break
        out += text[pos:]
        return bytes(out)


def regex_match(text: bytes, pattern: bytes) -> bool:
    """``kc::Regex::match(str, pattern)``: False when the pattern does not compile."""
    try:
        return PosixRegex(pattern).search(text)
    except ValueError:
        return False


def regex_replace(text: bytes, pattern: bytes, alt: bytes) -> bytes:
    """``kc::Regex::replace(str, pattern, alt)``: ``text`` unchanged when it does not compile."""
    try:
        return PosixRegex(pattern).replace(text, alt)
    except ValueError:
        return _c_string(text)


__all__ = ["PosixRegex", "regex_match", "regex_replace"]
