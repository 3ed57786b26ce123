# cython: language_level=3, boundscheck=False, wraparound=False
"""C versions of the bundled KT server's HTTP RPC hot path (``kt.protocol.fast_rpc``).

``rpc_response`` and ``tsv_params`` have pure-Python twins in ``kt.protocol.fast_rpc`` with
identical results; anything those would hand elsewhere (a key or value over 255 bytes, a body
with a CR) answers None here and the twin decides.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_SetItem
from libc.string cimport memchr, memcpy

cdef unsigned char _UNRESERVED[256]
cdef unsigned char _URL_SAFE[256]
cdef const char* _B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
cdef const char* _HEX = b"0123456789abcdef"


cdef void _init_tables():
    cdef int c
    for c in range(256):
        _UNRESERVED[c] = 0
        _URL_SAFE[c] = 0
    for c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789":
        _UNRESERVED[c] = 1
        _URL_SAFE[c] = 1
    for c in b"_-.!~*'()":
        _UNRESERVED[c] = 1
    for c in b"_-.~":
        _URL_SAFE[c] = 1


_init_tables()


cdef inline bint _is_control(unsigned char c):
    return c < 0x20 or c == 0x7F


cdef Py_ssize_t _encoded_size(int colenc, const unsigned char* s, Py_ssize_t n):
    cdef Py_ssize_t i, size
    if colenc == 0:
        return n
    if colenc == 1:
        return (n + 2) // 3 * 4
    size = 0
    for i in range(n):
        size += 1 if _URL_SAFE[s[i]] else 3
    return size


cdef char* _encode(int colenc, const unsigned char* s, Py_ssize_t n, char* out):
    """Write ``s`` encoded (0: as is, 1: Base64 padded, 2: kc::urlencode) at ``out``."""
    cdef Py_ssize_t i
    cdef unsigned int bits
    if colenc == 0:
        memcpy(out, s, n)
        return out + n
    if colenc == 1:
        i = 0
        while i + 3 <= n:
            bits = (s[i] << 16) | (s[i + 1] << 8) | s[i + 2]
            out[0] = _B64[(bits >> 18) & 63]
            out[1] = _B64[(bits >> 12) & 63]
            out[2] = _B64[(bits >> 6) & 63]
            out[3] = _B64[bits & 63]
            out += 4
            i += 3
        if n - i == 1:
            bits = s[i] << 16
            out[0] = _B64[(bits >> 18) & 63]
            out[1] = _B64[(bits >> 12) & 63]
            out[2] = 61
            out[3] = 61
            out += 4
        elif n - i == 2:
            bits = (s[i] << 16) | (s[i + 1] << 8)
            out[0] = _B64[(bits >> 18) & 63]
            out[1] = _B64[(bits >> 12) & 63]
            out[2] = _B64[(bits >> 6) & 63]
            out[3] = 61
            out += 4
        return out
    for i in range(n):
        if _URL_SAFE[s[i]]:
            out[0] = s[i]
            out += 1
        else:
            out[0] = 37
            out[1] = _HEX[s[i] >> 4]
            out[2] = _HEX[s[i] & 15]
            out += 3
    return out


cdef bytes _encoded(int colenc, bytes data):
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, _encoded_size(colenc, s, n))
    _encode(colenc, s, n, PyBytes_AS_STRING(out))
    return out


def rpc_response(bytes status_head, bytes date, bytes keep_line, dict output, tuple type_lines):
    """The whole RPC answer, as ``fast_rpc.rpc_response`` builds it from its parts:
    ``status_head`` (status line to ``Date: ``), the date, ``keep_line`` (up to the
    Content-Length value), the output map and the Content-Type lines for None, B and U.
    None when a key or value is not bytes or is longer than 255 bytes (the twin decides)."""
    cdef Py_ssize_t blen = 0, ulen = 0, n, i, size, clen_len
    cdef bint binary = False
    cdef int colenc
    cdef const unsigned char* s
    cdef list pairs = []
    cdef object key, value
    cdef bytes body, reply, type_line, clen_text
    cdef char* out
    for key, value in output.items():
        if type(key) is not bytes or type(value) is not bytes:
            return None
        for data in (key, value):
            n = PyBytes_GET_SIZE(data)
            if n > 255:
                return None
            s = <const unsigned char*>PyBytes_AS_STRING(data)
            blen += n * 6 // 4 + 3
            ulen += 3 * n
            for i in range(n):
                if _UNRESERVED[s[i]]:
                    ulen -= 2
                elif not binary and _is_control(s[i]):
                    binary = True
    colenc = 0 if not binary else (1 if blen < ulen else 2)
    size = 0
    for key, value in output.items():
        if colenc:
            key = _encoded(colenc, key)
            value = _encoded(colenc, value)
        pairs.append((key, value))
        size += PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(value) + 2
    if len(pairs) > 1:
        pairs.sort()
    type_line = type_lines[colenc]
    clen_text = b"%d" % size
    reply = PyBytes_FromStringAndSize(NULL, PyBytes_GET_SIZE(status_head) + PyBytes_GET_SIZE(date)
                                      + PyBytes_GET_SIZE(keep_line) + PyBytes_GET_SIZE(clen_text)
                                      + PyBytes_GET_SIZE(type_line) + size)
    out = PyBytes_AS_STRING(reply)
    for part in (status_head, date, keep_line, clen_text, type_line):
        n = PyBytes_GET_SIZE(part)
        memcpy(out, PyBytes_AS_STRING(part), n)
        out += n
    for key, value in pairs:
        n = PyBytes_GET_SIZE(key)
        memcpy(out, PyBytes_AS_STRING(key), n)
        out[n] = 9
        out += n + 1
        n = PyBytes_GET_SIZE(value)
        memcpy(out, PyBytes_AS_STRING(value), n)
        out[n] = 10
        out += n + 1
    return reply


def tsv_params(bytes body):
    """``tsv_to_map(body)`` of a body without a CR (None when it has one): lines on LF, the
    first TAB splits, lines without one ignored, the last of a key wins."""
    cdef const char* s = PyBytes_AS_STRING(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    cdef const char* end = s + n
    cdef const char* line
    cdef const char* eol
    cdef const char* tab
    cdef dict params = {}
    if memchr(s, 13, n) != NULL:
        return None
    line = s
    while line <= end:
        eol = <const char*>memchr(line, 10, end - line)
        if eol == NULL:
            eol = end
        tab = <const char*>memchr(line, 9, eol - line)
        if tab != NULL:
            PyDict_SetItem(params, PyBytes_FromStringAndSize(line, tab - line),
                           PyBytes_FromStringAndSize(tab + 1, eol - tab - 1))
        line = eol + 1
    return params
