# cython: language_level=3
"""The bundled Tokyo Tyrant server's hot requests in C: ``get``, ``put``, ``mget`` and the
record ``misc`` functions (``put``/``out``/``get``, their ``*list`` forms, and ``search``).

Why: in Python each of these paid a parse into a ``Request``, a ctypes call (and GIL hand-off)
per record and a reply built from Python objects; here one call parses the request straight
from the receive buffer, calls Tokyo Cabinet with the GIL released for the whole request and
builds the reply bytes.  Tokyo Cabinet is reached through the function addresses of the ctypes
library object :mod:`kt.server.engines.tc` loaded (:func:`bind`), so nothing links against it.

Only well-formed, complete requests are taken: :func:`serve` answers None for anything else
(incomplete, bad sizes, another command or ``misc`` function) and the pure-Python path of
:mod:`kt.server.tt_server` handles it, with ttserver's exact behaviour for the odd cases.  The
replies and update-log messages are byte-identical to that path's (tests/test_speedups_tt_server.py).
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy

cdef extern from *:
    """
    typedef struct { char *ptr; int size; } kt_TCLISTDATUM;
    typedef struct { kt_TCLISTDATUM *array; int anum; int start; int num; } kt_TCLIST;
    """
    ctypedef struct kt_TCLISTDATUM:
        char *ptr
        int size
    ctypedef struct kt_TCLIST:
        kt_TCLISTDATUM *array
        int anum
        int start
        int num

ctypedef void *(*adbget_t)(void *adb, const void *kbuf, int ksiz, int *sp) noexcept nogil
ctypedef unsigned char (*adbput_t)(void *adb, const void *kbuf, int ksiz, const void *vbuf, int vsiz) noexcept nogil
ctypedef kt_TCLIST *(*adbmisc_t)(void *adb, const char *name, const kt_TCLIST *args) noexcept nogil
ctypedef kt_TCLIST *(*listnew2_t)(int anum) noexcept nogil
ctypedef void (*listpush_t)(kt_TCLIST *lst, const void *ptr, int size) noexcept nogil
ctypedef void (*listdel_t)(kt_TCLIST *lst) noexcept nogil
ctypedef void (*free_t)(void *ptr) noexcept nogil

cdef adbget_t c_adbget = NULL
cdef adbput_t c_adbput = NULL
cdef adbmisc_t c_adbmisc = NULL
cdef listnew2_t c_listnew2 = NULL
cdef listpush_t c_listpush = NULL
cdef listdel_t c_listdel = NULL
cdef free_t c_tcfree = NULL

cdef enum:
    MAGIC = 0xC8
    CMD_PUT = 0x10
    CMD_GET = 0x30
    CMD_MGET = 0x31
    CMD_MISC = 0x90
    MAX_ARG_SIZE = 1 << 28
    MAX_ARG_NUM = 1 << 20
    MAX_NAME_SIZE = 1024
    MISC_NO_UPDATE_LOG = 1

cdef bytes REPLY_OK = b"\x00"
cdef bytes REPLY_FAIL = b"\x01"
cdef bytes MISC_FAIL = b"\x01\x00\x00\x00\x00"


def bind(lib):
    """Take Tokyo Cabinet's entry points from ``lib`` (the ctypes ``CDLL`` engines/tc.py loaded)."""
    import ctypes

    global c_adbget, c_adbput, c_adbmisc, c_listnew2, c_listpush, c_listdel, c_tcfree

    def addr(name):
        return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value

    c_adbget = <adbget_t><size_t>addr("tcadbget")
    c_adbput = <adbput_t><size_t>addr("tcadbput")
    c_adbmisc = <adbmisc_t><size_t>addr("tcadbmisc")
    c_listnew2 = <listnew2_t><size_t>addr("tclistnew2")
    c_listpush = <listpush_t><size_t>addr("tclistpush")
    c_listdel = <listdel_t><size_t>addr("tclistdel")
    c_tcfree = <free_t><size_t>addr("tcfree")


cdef inline int32_t rd32(const unsigned char *p) noexcept nogil:
    return <int32_t>((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3])


cdef inline void wr32(char *p, uint32_t v) noexcept nogil:
    p[0] = <char>(v >> 24)
    p[1] = <char>(v >> 16)
    p[2] = <char>(v >> 8)
    p[3] = <char>v


cdef Py_ssize_t scan_items(const unsigned char *b, Py_ssize_t pos, Py_ssize_t n, int32_t count) noexcept nogil:
    """The end of ``count`` complete, well-formed ``[size:4][bytes]`` items from ``pos``, or -1."""
    cdef int32_t i, size
    for i in range(count):
        if pos + 4 > n:
            return -1
        size = rd32(b + pos)
        if size < 0 or size > MAX_ARG_SIZE:
            return -1
        pos += 4 + size
        if pos > n:
            return -1
    return pos


def serve(size_t handle, bytearray buf, bint log):
    """The request at ``buf[0]`` if it is one this module serves, complete and well formed:
    ``(end, reply, command, ok, log_message)`` (``log_message`` None unless ``log`` and the
    request is an update to log); None otherwise (the Python path takes it).

    ``buf`` (the connection's receive buffer) is read in place: nothing else may resize it
    during the call (the event loop owns it)."""
    cdef Py_ssize_t n = PyByteArray_GET_SIZE(buf)
    if n < 2 or c_adbget == NULL:
        return None
    cdef const unsigned char *b = <const unsigned char *>PyByteArray_AS_STRING(buf)
    if b[0] != MAGIC:
        return None
    cdef int cmd = b[1]
    if cmd == CMD_GET:
        return _get(<void *>handle, b, n)
    if cmd == CMD_PUT:
        return _put(<void *>handle, b, n, log)
    if cmd == CMD_MGET:
        return _mget(<void *>handle, b, n)
    if cmd == CMD_MISC:
        return _misc(<void *>handle, b, n, log)
    return None


cdef object _get(void *adb, const unsigned char *b, Py_ssize_t n):
    if n < 6:
        return None
    cdef int32_t ksiz = rd32(b + 2)
    if ksiz < 0 or ksiz > MAX_ARG_SIZE or 6 + <Py_ssize_t>ksiz > n:
        return None
    cdef int vsiz = 0
    cdef char *val
    with nogil:
        val = <char *>c_adbget(adb, b + 6, ksiz, &vsiz)
    if val == NULL:
        return (6 + ksiz, REPLY_FAIL, CMD_GET, False, None)
    try:
        reply = PyBytes_FromStringAndSize(NULL, 5 + vsiz)
        out = PyBytes_AS_STRING(reply)
        out[0] = 0
        wr32(out + 1, vsiz)
        memcpy(out + 5, val, vsiz)
    finally:
        c_tcfree(val)
    return (6 + ksiz, reply, CMD_GET, True, None)


cdef object _put(void *adb, const unsigned char *b, Py_ssize_t n, bint log):
    if n < 10:
        return None
    cdef int32_t ksiz = rd32(b + 2)
    cdef int32_t vsiz = rd32(b + 6)
    if ksiz < 0 or ksiz > MAX_ARG_SIZE or vsiz < 0 or vsiz > MAX_ARG_SIZE:
        return None
    cdef Py_ssize_t end = 10 + <Py_ssize_t>ksiz + vsiz
    if end > n:
        return None
    cdef bint ok
    with nogil:
        ok = c_adbput(adb, b + 10, ksiz, b + 10 + ksiz, vsiz) != 0
    message = None
    if log:
        message = PyBytes_FromStringAndSize(<const char *>b, end + 1)
        PyBytes_AS_STRING(message)[end] = 0 if ok else 1
    return (end, REPLY_OK if ok else REPLY_FAIL, CMD_PUT, ok, message)


cdef struct Hit:
    Py_ssize_t kpos
    int ksiz
    char *val
    int vsiz


cdef object _mget(void *adb, const unsigned char *b, Py_ssize_t n):
    if n < 6:
        return None
    cdef int32_t count = rd32(b + 2)
    if count < 0 or count > MAX_ARG_NUM:
        return None
    cdef Py_ssize_t end = scan_items(b, 6, n, count)
    if end < 0:
        return None
    cdef Hit *hits = <Hit *>malloc(sizeof(Hit) * (count if count > 0 else 1))
    if hits == NULL:
        raise MemoryError()
    cdef Py_ssize_t pos = 6, total = 5
    cdef int32_t i, ksiz, found = 0
    cdef int vsiz
    cdef char *val
    cdef char *out
    try:
        with nogil:
            for i in range(count):
                ksiz = rd32(b + pos)
                val = <char *>c_adbget(adb, b + pos + 4, ksiz, &vsiz)
                if val != NULL:
                    hits[found].kpos = pos + 4
                    hits[found].ksiz = ksiz
                    hits[found].val = val
                    hits[found].vsiz = vsiz
                    found += 1
                    total += 8 + ksiz + vsiz
                pos += 4 + ksiz
        reply = PyBytes_FromStringAndSize(NULL, total)
        out = PyBytes_AS_STRING(reply)
        with nogil:
            out[0] = 0
            wr32(out + 1, found)
            pos = 5
            for i in range(found):
                wr32(out + pos, hits[i].ksiz)
                wr32(out + pos + 4, hits[i].vsiz)
                pos += 8
                memcpy(out + pos, b + hits[i].kpos, hits[i].ksiz)
                pos += hits[i].ksiz
                memcpy(out + pos, hits[i].val, hits[i].vsiz)
                pos += hits[i].vsiz
    finally:
        for i in range(found):
            c_tcfree(hits[i].val)
        free(hits)
    return (end, reply, CMD_MGET, True, None)


cdef bint _record_function(const unsigned char *name, int32_t nsiz) noexcept nogil:
    """The misc functions served here (record operations and searches, run on the event loop)."""
    if nsiz == 3:
        return (memcmp(name, b"put", 3) == 0 or memcmp(name, b"out", 3) == 0
                or memcmp(name, b"get", 3) == 0)
    if nsiz == 7:
        return (memcmp(name, b"putlist", 7) == 0 or memcmp(name, b"outlist", 7) == 0
                or memcmp(name, b"getlist", 7) == 0)
    if nsiz == 6:
        return memcmp(name, b"search", 6) == 0
    return False


cdef object _misc(void *adb, const unsigned char *b, Py_ssize_t n, bint log):
    if n < 14:
        return None
    cdef int32_t nsiz = rd32(b + 2)
    cdef int32_t opts = rd32(b + 6)
    cdef int32_t count = rd32(b + 10)
    if nsiz < 0 or nsiz >= MAX_NAME_SIZE or count < 0 or count > MAX_ARG_NUM:
        return None
    cdef Py_ssize_t args_pos = 14 + <Py_ssize_t>nsiz
    if args_pos > n or not _record_function(b + 14, nsiz):
        return None
    cdef Py_ssize_t end = scan_items(b, args_pos, n, count)
    if end < 0:
        return None
    cdef char name[MAX_NAME_SIZE]
    memcpy(name, b + 14, nsiz)
    name[nsiz] = 0
    cdef kt_TCLIST *args
    cdef kt_TCLIST *res
    cdef Py_ssize_t pos = args_pos, total = 5
    cdef int32_t i, size
    with nogil:
        args = c_listnew2(count if count > 0 else 1)
        for i in range(count):
            size = rd32(b + pos)
            c_listpush(args, b + pos + 4, size)
            pos += 4 + size
        res = c_adbmisc(adb, name, args)
        c_listdel(args)
    cdef char *out
    cdef kt_TCLISTDATUM *item
    try:
        if res == NULL:
            reply = MISC_FAIL
        else:
            for i in range(res.num):
                total += 4 + res.array[res.start + i].size
            reply = PyBytes_FromStringAndSize(NULL, total)
            out = PyBytes_AS_STRING(reply)
            out[0] = 0
            wr32(out + 1, res.num)
            pos = 5
            for i in range(res.num):
                item = &res.array[res.start + i]
                wr32(out + pos, item.size)
                memcpy(out + pos + 4, item.ptr, item.size)
                pos += 4 + item.size
    finally:
        if res != NULL:
            c_listdel(res)
    message = None
    if log and not opts & MISC_NO_UPDATE_LOG:
        message = _misc_log(b, nsiz, count, args_pos, end, res != NULL)
    return (end, reply, CMD_MISC, res != NULL, message)


cdef object _misc_log(const unsigned char *b, int32_t nsiz, int32_t count, Py_ssize_t args_pos,
                      Py_ssize_t end, bint ok):
    """``C8 90 [nsiz][argc][name]{[asiz][arg]}* [result]`` (the name up to its first NUL)."""
    cdef int32_t nlen = 0
    while nlen < nsiz and b[14 + nlen] != 0:
        nlen += 1
    cdef Py_ssize_t size = 10 + nlen + (end - args_pos) + 1
    message = PyBytes_FromStringAndSize(NULL, size)
    cdef char *out = PyBytes_AS_STRING(message)
    out[0] = <char>MAGIC
    out[1] = <char>CMD_MISC
    wr32(out + 2, nlen)
    wr32(out + 6, count)
    memcpy(out + 10, b + 14, nlen)
    memcpy(out + 10 + nlen, b + args_pos, end - args_pos)
    out[size - 1] = 0 if ok else 1
    return message


def scan_request(const unsigned char[::1] buf, Py_ssize_t pos=0, state=None):
    """:func:`kt.protocol.tt_binary.scan_request` in C (same arguments, same answers): whether
    the mget/misc request at ``buf[pos]`` is complete yet, resumable with ``state``."""
    cdef Py_ssize_t size = buf.shape[0]
    cdef const unsigned char *b = &buf[0] if size > 0 else NULL
    cdef Py_ssize_t off
    cdef int32_t count, nsiz, item
    cdef long left
    cdef int cmd
    if state is None:
        if size - pos < 2 or b[pos] != MAGIC:
            return (size - pos >= 2 or (size > pos and b[pos] != MAGIC)), None
        cmd = b[pos + 1]
        if cmd == CMD_MGET:
            if size - pos < 6:
                return False, None
            count = rd32(b + pos + 2)
            off = 6
        elif cmd == CMD_MISC:
            if size - pos < 14:
                return False, None
            nsiz = rd32(b + pos + 2)
            count = rd32(b + pos + 10)
            if nsiz < 0 or nsiz >= MAX_NAME_SIZE:
                return True, None
            off = 14 + nsiz
        else:
            return True, None
        if count < 0 or count > MAX_ARG_NUM:
            return True, None
        left = count
    else:
        off, left = state
    off += pos
    with nogil:
        while left and off + 4 <= size:
            item = rd32(b + off)
            if item < 0 or item > MAX_ARG_SIZE:
                break
            off += 4 + item
            left -= 1
    if left and off + 4 <= size:
        return True, None
    return (not left and off <= size), (off - pos, left)
