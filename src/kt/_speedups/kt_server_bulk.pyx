# cython: language_level=3
"""The KT server's binary bulk requests (set/remove/get_bulk) in C, a batch at a time.

Why: in Python every record costs a parse step, a ctypes call and a reply-encoding step
(~15,000 instructions); here a batch of records is parsed in one pass and applied with the GIL
released, calling Kyoto Cabinet through the function addresses of the ctypes library object
(``bind``), so nothing is linked at build time and no KC headers are needed.

The pure-Python twin is ``kt.protocol.kt_binary.parse_records`` plus ``TimedDB.set_many`` /
``remove_many`` / ``get_many`` and ``encode_get_bulk_reply``: ``Batch.records`` gives the very
tuples ``parse_records`` gives, and the engine calls keep TimedDB's record layout
(``[xt:5][value]``), its xt rule (``modify_exptime``) and its expiry checks.  A batch only
touches the engine through ``set``/``remove``/``get`` here; everything needing Python (update
log, capacity eviction, the expiry sweep, counters) stays with the caller.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcpy, memmove
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.errno cimport EINTR, errno
from posix.unistd cimport pwrite
from cpython.pythread cimport (NOWAIT_LOCK, WAIT_LOCK, PyThread_acquire_lock, PyThread_allocate_lock,
                               PyThread_free_lock, PyThread_release_lock, PyThread_type_lock)

import os
import time

ctypedef const char* (*fullproc_t)(const char*, size_t, const char*, size_t, size_t*, void*) noexcept nogil
ctypedef const char* (*emptyproc_t)(const char*, size_t, size_t*, void*) noexcept nogil
ctypedef int32_t (*set_t)(void*, const char*, size_t, const char*, size_t) noexcept nogil
ctypedef int32_t (*getbuf_t)(void*, const char*, size_t, char*, size_t) noexcept nogil
ctypedef int32_t (*accept_t)(void*, const char*, size_t, fullproc_t, emptyproc_t, void*, int32_t) noexcept nogil
ctypedef int32_t (*ecode_t)(void*) noexcept nogil
ctypedef int32_t (*curaccept_t)(void*, fullproc_t, void*, int32_t, int32_t) noexcept nogil

cdef set_t _kcdbset = NULL
cdef getbuf_t _kcdbgetbuf = NULL
cdef accept_t _kcdbaccept = NULL
cdef ecode_t _kcdbecode = NULL
cdef curaccept_t _kccuraccept = NULL
cdef const char* _VISNOP = NULL
cdef const char* _VISREMOVE = NULL

cdef enum:
    MAGIC_SET_BULK = 0xB8
    DATA_MAX_SIZE = 1 << 28
    XTWIDTH = 5
    NOREC = 7
    SET_HEAD = 18
    KEY_HEAD = 6

cdef enum:
    USET = 0xA1
    UREMOVE = 0xA2
    BEGMAGIC = 0xA1
    ENDMAGIC = 0xA2
    LOGHEAD = 13  # [BEGMAGIC][ts:8][msiz:4]
    TSLACC = 1000000

cdef int64_t XTMAX = (<int64_t>1 << 40) - 1
cdef int64_t INT64MAX = 0x7FFFFFFFFFFFFFFF

FLAG_NUL_KEY = 1
"""``Batch.flags``: a key holds a NUL byte."""
FLAG_EXPIRING = 2
"""``Batch.flags``: a set record will be stored with an expiration time (below XTMAX)."""


def bind(size_t kcdbset, size_t kcdbgetbuf, size_t kcdbaccept, size_t kcdbecode,
         size_t kccuraccept, size_t visnop, size_t visremove):
    """Take the engine's function addresses (and KCVISNOP/KCVISREMOVE) from ctypes."""
    global _kcdbset, _kcdbgetbuf, _kcdbaccept, _kcdbecode, _kccuraccept, _VISNOP, _VISREMOVE
    _kccuraccept = <curaccept_t>kccuraccept
    _kcdbset = <set_t>kcdbset
    _kcdbgetbuf = <getbuf_t>kcdbgetbuf
    _kcdbaccept = <accept_t>kcdbaccept
    _kcdbecode = <ecode_t>kcdbecode
    _VISNOP = <const char*>visnop
    _VISREMOVE = <const char*>visremove


def bound():
    return _kcdbset != NULL


ctypedef struct Rec:
    size_t koff
    uint32_t ksiz
    size_t voff
    uint32_t vsiz
    int64_t xt
    uint16_t dbidx


cdef inline uint32_t _u32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline void _put32(char* p, uint32_t v) noexcept nogil:
    p[0] = <char>(v >> 24)
    p[1] = <char>(v >> 16)
    p[2] = <char>(v >> 8)
    p[3] = <char>v


cdef inline void _put64(char* p, uint64_t v) noexcept nogil:
    cdef int i
    for i in range(8):
        p[i] = <char>(v >> (56 - 8 * i))


cdef inline int64_t _stored_xt(int64_t xt, int64_t now) noexcept nogil:
    """TimedDB.modify_exptime."""
    if xt < 0:
        if xt < -(<int64_t>1 << 62):
            xt = -(<int64_t>1 << 62)
        xt = -xt
    else:
        if xt > INT64MAX // 2:
            xt = INT64MAX // 2
        xt = xt + now
    if xt > XTMAX:
        xt = XTMAX
    return xt


cdef inline int64_t _read_xt(const char* p) noexcept nogil:
    cdef const uint8_t* u = <const uint8_t*>p
    return ((<int64_t>u[0] << 32) | (<int64_t>u[1] << 24) | (<int64_t>u[2] << 16)
            | (<int64_t>u[3] << 8) | u[4])


ctypedef struct QueueCore:
    PyThread_type_lock lock
    char* buf
    size_t used
    size_t cap


cdef inline size_t _varnum_size(size_t n) noexcept nogil:
    cdef size_t size = 1
    while n >= 128:
        n >>= 7
        size += 1
    return size


cdef inline char* _put_varnum(char* p, size_t n) noexcept nogil:
    """KC's writevarnum: big-endian base-128, the high bit set on all but the last byte."""
    cdef size_t size = _varnum_size(n), i
    for i in range(size):
        p[size - 1 - i] = <char>((n & 0x7F) | (0x80 if i else 0))
        n >>= 7
    return p + size


cdef int _queue(QueueCore* q, uint32_t prefix, int op, const char* kbuf, size_t ksiz,
                const char* sbuf, size_t ssiz) noexcept nogil:
    """Queue the log record of one update (its ts left 0 until ``LogQueue.take``); the
    caller holds ``q.lock``.  -1 when out of memory."""
    cdef size_t msiz = 5 + _varnum_size(ksiz) + ksiz
    cdef size_t need, cap
    cdef char* p
    if op == USET:
        msiz += _varnum_size(ssiz) + ssiz
    need = q.used + LOGHEAD + msiz + 1
    if need > q.cap:
        cap = need * 2 if need > 4096 else 8192
        p = <char*>realloc(q.buf, cap)
        if p == NULL:
            return -1
        q.buf = p
        q.cap = cap
    p = q.buf + q.used
    p[0] = <char>BEGMAGIC
    _put64(p + 1, 0)
    _put32(p + 9, <uint32_t>msiz)
    _put32(p + LOGHEAD, prefix)
    p[LOGHEAD + 4] = <char>op
    p = _put_varnum(p + LOGHEAD + 5, ksiz)
    if op == USET:
        p = _put_varnum(p, ssiz)
    memcpy(p, kbuf, ksiz)
    p += ksiz
    if op == USET:
        memcpy(p, sbuf, ssiz)
        p += ssiz
    p[0] = <char>ENDMAGIC
    q.used = need
    return 0


cdef int _queue_locked(QueueCore* q, uint32_t prefix, int op, const char* kbuf, size_t ksiz,
                       const char* sbuf, size_t ssiz) noexcept nogil:
    cdef int rv
    PyThread_acquire_lock(q.lock, WAIT_LOCK)
    rv = _queue(q, prefix, op, kbuf, ksiz, sbuf, ssiz)
    PyThread_release_lock(q.lock)
    return rv


cdef class LogQueue:
    """Update-log records not yet in the file, in apply order, and the log's clock.

    The lock (``with queue:``) is the update log's: C visitors queue records under it
    without the GIL; ``UpdateLogger`` holds it to stamp and write them out (``take``) and to
    write its own records, so the file keeps one order.  Twin: ``kt.server.ulog.PendingLog``.
    """

    cdef QueueCore core
    cdef public int64_t tswall
    cdef public int64_t tslogic

    def __cinit__(self):
        self.core.lock = PyThread_allocate_lock()
        if self.core.lock == NULL:
            raise MemoryError()
        self.core.buf = NULL
        self.core.used = 0
        self.core.cap = 0
        self.tswall = 0
        self.tslogic = 0

    def __dealloc__(self):
        if self.core.lock != NULL:
            PyThread_free_lock(self.core.lock)
        free(self.core.buf)

    def __enter__(self):
        if not PyThread_acquire_lock(self.core.lock, NOWAIT_LOCK):
            with nogil:
                PyThread_acquire_lock(self.core.lock, WAIT_LOCK)
        return self

    def __exit__(self, *exc):
        PyThread_release_lock(self.core.lock)
        return False

    def push(self, int op, bytes key, bytes stored=None, uint32_t prefix=0):
        """Queue one update (lock held): USET ``key`` ``stored`` or UREMOVE ``key``, after
        the ``[sid:2][dbid:2]`` ``prefix``."""
        if op != USET and op != UREMOVE:
            raise ValueError(f"not a queued update operation: {op}")
        if op == USET and stored is None:
            raise ValueError("a USET update needs the stored value")
        cdef const char* sbuf = NULL
        cdef size_t ssiz = 0
        if op == USET:
            sbuf = stored
            ssiz = len(stored)
        if _queue(&self.core, prefix, op, key, len(key), sbuf, ssiz):
            raise MemoryError()

    def pending(self):
        """Whether records wait (lock held)."""
        return self.core.used > 0

    def clock(self):
        """The next log timestamp (lock held): ``UpdateLogger::clock``."""
        return self._stamp(int(time.time() * 1000))

    cdef int64_t _stamp(self, int64_t ct) noexcept:
        if ct > self.tswall:
            self.tswall = ct
            self.tslogic = 0
        else:
            self.tslogic += 1
        return self.tswall * TSLACC + self.tslogic

    def take(self, int64_t room):
        """``(records, max ts)``: the queued records stamped in order, while fewer than
        ``room`` bytes are taken (at least one), for the current log file (lock held)."""
        cdef size_t off = 0, size
        cdef int64_t ts = 0
        cdef int64_t ct = int(time.time() * 1000)
        cdef char* p
        while off < self.core.used and (off == 0 or <int64_t>off < room):
            p = self.core.buf + off
            ts = self._stamp(ct)
            _put64(p + 1, <uint64_t>ts)
            size = LOGHEAD + _u32(<const uint8_t*>p + 9) + 1
            off += size
        out = PyBytes_FromStringAndSize(self.core.buf, off)
        memmove(self.core.buf, self.core.buf + off, self.core.used - off)
        self.core.used -= off
        return out, ts

    def write_out(self, int fd, int64_t size, int64_t limit, int64_t cts):
        """``take`` what fits the log file ``fd`` (``limit`` bytes) and write it at ``size``,
        then the file's meta header: ``(new size, new max ts)`` (lock held)."""
        cdef char meta[17]
        records, ts = self.take(limit - size)
        _pwrite_all(fd, records, len(records), size)
        size += len(records)
        if ts > cts:
            cts = ts
        meta[0] = <char>0xA0
        _put64(meta + 1, <uint64_t>size)
        _put64(meta + 9, <uint64_t>cts)
        _pwrite_all(fd, meta, 17, 0)
        return size, cts


cdef int _pwrite_all(int fd, const char* data, size_t size, int64_t off) except -1:
    """os.pwrite until all is written (the GIL released); OSError on failure."""
    cdef ssize_t n
    cdef int err = 0
    with nogil:
        while size > 0:
            n = pwrite(fd, data, size, off)
            if n < 0:
                if errno == EINTR:
                    continue
                err = errno
                break
            data += n
            size -= n
            off += n
    if err:
        raise OSError(err, os.strerror(err))
    return 0


ctypedef struct RemoveState:
    int64_t now
    int persistent
    int hit
    QueueCore* q
    uint32_t prefix
    int nomem


ctypedef struct SetState:
    int persistent
    const char* sbuf
    size_t ssiz
    QueueCore* q
    uint32_t prefix
    int nomem


cdef const char* _setlog_full(const char* kbuf, size_t ksiz, const char* vbuf, size_t vsiz,
                              size_t* sp, void* opq) noexcept nogil:
    """TimedDB.set with an update log (its ``_wrap``): a record without an xt head is left
    alone; otherwise the new record is stored and its USET queued."""
    cdef SetState* st = <SetState*>opq
    if not st.persistent and vsiz < XTWIDTH:
        return _VISNOP
    return _setlog_empty(kbuf, ksiz, sp, opq)


cdef const char* _setlog_empty(const char* kbuf, size_t ksiz, size_t* sp, void* opq) noexcept nogil:
    cdef SetState* st = <SetState*>opq
    if _queue_locked(st.q, st.prefix, USET, kbuf, ksiz, st.sbuf, st.ssiz):
        st.nomem = 1
        return _VISNOP
    sp[0] = st.ssiz
    return st.sbuf


cdef const char* _removelog_full(const char* kbuf, size_t ksiz, const char* vbuf, size_t vsiz,
                                 size_t* sp, void* opq) noexcept nogil:
    """TimedDB.remove with an update log: a live record is a hit; absent, expired or live, the
    UREMOVE is queued (as ktserver logs it); a record without an xt head is left alone."""
    cdef RemoveState* st = <RemoveState*>opq
    if not st.persistent:
        if vsiz < XTWIDTH:
            return _VISNOP
        if st.now <= _read_xt(vbuf):
            st.hit = 1
    else:
        st.hit = 1
    return _removelog_empty(kbuf, ksiz, sp, opq)


cdef const char* _removelog_empty(const char* kbuf, size_t ksiz, size_t* sp, void* opq) noexcept nogil:
    cdef RemoveState* st = <RemoveState*>opq
    if _queue_locked(st.q, st.prefix, UREMOVE, kbuf, ksiz, NULL, 0):
        st.hit = 0
        st.nomem = 1
        return _VISNOP
    return _VISREMOVE


cdef const char* _purgelog_full(const char* kbuf, size_t ksiz, const char* vbuf, size_t vsiz,
                                size_t* sp, void* opq) noexcept nogil:
    """The expirer's visitor with an update log: an expired record goes, its UREMOVE queued."""
    cdef RemoveState* st = <RemoveState*>opq
    if vsiz < XTWIDTH or st.now <= _read_xt(vbuf):
        return _VISNOP
    if _queue_locked(st.q, st.prefix, UREMOVE, kbuf, ksiz, NULL, 0):
        st.nomem = 1
        return _VISNOP
    return _VISREMOVE


cdef QueueCore* _core(object queue) except? NULL:
    """The C side of a LogQueue, or NULL for None."""
    if queue is None:
        return NULL
    return &(<LogQueue?>queue).core


cdef const char* _remove_full(const char* kbuf, size_t ksiz, const char* vbuf, size_t vsiz,
                              size_t* sp, void* opq) noexcept nogil:
    """TimedDB.remove's visitor: a live record is a hit; live or expired, it goes."""
    cdef RemoveState* st = <RemoveState*>opq
    if st.persistent:
        st.hit = 1
        return _VISREMOVE
    if vsiz < XTWIDTH:
        return _VISNOP
    if st.now <= _read_xt(vbuf):
        st.hit = 1
    return _VISREMOVE


cdef const char* _remove_empty(const char* kbuf, size_t ksiz, size_t* sp, void* opq) noexcept nogil:
    return _VISNOP


cdef const char* _purge_full(const char* kbuf, size_t ksiz, const char* vbuf, size_t vsiz,
                             size_t* sp, void* opq) noexcept nogil:
    """The expirer's visitor (TimedDB._expire_steps' ``purge``): an expired record goes."""
    if vsiz < XTWIDTH or (<int64_t*>opq)[0] <= _read_xt(vbuf):
        return _VISNOP
    return _VISREMOVE


def sweep(size_t cursor, Py_ssize_t steps, int64_t now, queue=None, uint32_t prefix=0):
    """Up to ``steps`` records from the cursor on, each removed when expired at ``now`` (its
    UREMOVE queued on the LogQueue ``queue`` after ``prefix``, if given), the GIL released:
    ``steps``, or how many were visited before the cursor ran out (or failed)."""
    cdef Py_ssize_t i
    cdef RemoveState st
    st.now = now
    st.q = _core(queue)
    st.prefix = prefix
    st.nomem = 0
    with nogil:
        for i in range(steps):
            if st.q != NULL:
                if not _kccuraccept(<void*>cursor, _purgelog_full, &st, 1, 1) or st.nomem:
                    break
            elif not _kccuraccept(<void*>cursor, _purge_full, &now, 1, 1):
                break
        else:
            i = steps
    if st.nomem:
        raise MemoryError()
    return i


cdef class Batch:
    """Complete records of one set/remove/get_bulk batch, copied out of the receive buffer."""

    cdef char* data
    cdef Rec* recs
    cdef Py_ssize_t count
    cdef int magic
    cdef readonly Py_ssize_t nbytes

    def __cinit__(self):
        self.data = NULL
        self.recs = NULL
        self.count = 0

    def __dealloc__(self):
        free(self.data)
        free(self.recs)

    def __len__(self):
        return self.count

    @property
    def magic(self):
        return self.magic

    def runs(self):
        """``(dbidx, start, stop)`` for each run of consecutive records naming one database."""
        cdef Py_ssize_t i, start = 0
        out = []
        if self.count == 0:
            return out
        for i in range(1, self.count):
            if self.recs[i].dbidx != self.recs[start].dbidx:
                out.append((self.recs[start].dbidx, start, i))
                start = i
        out.append((self.recs[start].dbidx, start, self.count))
        return out

    def records(self, Py_ssize_t start=0, Py_ssize_t stop=-1):
        """The records as ``parse_records`` gives them (the pure-Python path's input)."""
        cdef Py_ssize_t i
        cdef Rec* r
        if stop < 0 or stop > self.count:
            stop = self.count
        out = []
        for i in range(start, stop):
            r = &self.recs[i]
            key = PyBytes_FromStringAndSize(self.data + r.koff, r.ksiz)
            if self.magic == MAGIC_SET_BULK:
                out.append((r.dbidx, key, PyBytes_FromStringAndSize(self.data + r.voff, r.vsiz), r.xt))
            else:
                out.append((r.dbidx, key))
        return out

    def flags(self, Py_ssize_t start, Py_ssize_t stop, int64_t now):
        """FLAG_NUL_KEY / FLAG_EXPIRING over records ``start:stop`` (noted before storing)."""
        cdef Py_ssize_t i
        cdef int out = 0
        for i in range(start, stop):
            if self.recs[i].ksiz and memchr(self.data + self.recs[i].koff, 0, self.recs[i].ksiz) != NULL:
                out |= FLAG_NUL_KEY
            if self.magic == MAGIC_SET_BULK and _stored_xt(self.recs[i].xt, now) < XTMAX:
                out |= FLAG_EXPIRING
        return out

    def set(self, size_t handle, Py_ssize_t start, Py_ssize_t stop, bint persistent, int64_t now,
            queue=None, uint32_t prefix=0):
        """kcdbset each record in order, the GIL released; -1, or the index that failed.
        With a LogQueue ``queue`` each record's USET is queued after ``prefix``."""
        cdef Py_ssize_t failed = self._set(<void*>handle, start, stop, persistent, now,
                                           _core(queue), prefix)
        if failed == -2:
            raise MemoryError()
        return failed

    cdef Py_ssize_t _set(self, void* db, Py_ssize_t start, Py_ssize_t stop, bint persistent,
                         int64_t now, QueueCore* q, uint32_t prefix) noexcept:
        cdef Py_ssize_t i, failed = -1
        cdef uint32_t maxv = 0
        cdef char* scratch
        cdef Rec* r
        cdef int64_t xt
        cdef int32_t ok
        cdef SetState st
        st.persistent = persistent
        st.q = q
        st.prefix = prefix
        st.nomem = 0
        for i in range(start, stop):
            if self.recs[i].vsiz > maxv:
                maxv = self.recs[i].vsiz
        scratch = <char*>malloc(maxv + XTWIDTH)
        if scratch == NULL:
            return -2
        with nogil:
            for i in range(start, stop):
                r = &self.recs[i]
                if persistent:
                    st.sbuf = self.data + r.voff
                    st.ssiz = r.vsiz
                else:
                    xt = _stored_xt(r.xt, now)
                    scratch[0] = <char>(xt >> 32)
                    scratch[1] = <char>(xt >> 24)
                    scratch[2] = <char>(xt >> 16)
                    scratch[3] = <char>(xt >> 8)
                    scratch[4] = <char>xt
                    memcpy(scratch + XTWIDTH, self.data + r.voff, r.vsiz)
                    st.sbuf = scratch
                    st.ssiz = r.vsiz + XTWIDTH
                if q != NULL:
                    ok = _kcdbaccept(db, self.data + r.koff, r.ksiz, _setlog_full, _setlog_empty, &st, 1)
                    if st.nomem:
                        failed = -2
                        break
                else:
                    ok = _kcdbset(db, self.data + r.koff, r.ksiz, st.sbuf, st.ssiz)
                if not ok:
                    failed = i
                    break
        free(scratch)
        return failed

    def remove(self, size_t handle, Py_ssize_t start, Py_ssize_t stop, bint persistent, int64_t now,
               queue=None, uint32_t prefix=0):
        """Remove each key in order (expired ones are purged, not counted): the hits, or -1
        when the engine failed (its error is this thread's).  With a LogQueue ``queue`` each
        key's UREMOVE is queued after ``prefix``."""
        cdef Py_ssize_t hits = self._remove(<void*>handle, start, stop, persistent, now,
                                            _core(queue), prefix)
        if hits == -2:
            raise MemoryError()
        return hits

    cdef Py_ssize_t _remove(self, void* db, Py_ssize_t start, Py_ssize_t stop, bint persistent,
                            int64_t now, QueueCore* q, uint32_t prefix) noexcept:
        """``remove``; -2 when a log record found no memory (the records before it stay)."""
        cdef Py_ssize_t i, hits = 0
        cdef RemoveState st
        cdef Rec* r
        cdef fullproc_t full = _removelog_full if q != NULL else _remove_full
        cdef emptyproc_t empty = _removelog_empty if q != NULL else _remove_empty
        st.now = now
        st.persistent = persistent
        st.q = q
        st.prefix = prefix
        st.nomem = 0
        with nogil:
            for i in range(start, stop):
                r = &self.recs[i]
                st.hit = 0
                if not _kcdbaccept(db, self.data + r.koff, r.ksiz, full, empty, &st, 1):
                    hits = -1
                    break
                if st.nomem:
                    hits = -2
                    break
                hits += st.hit
        return hits

    def get(self, size_t handle, Py_ssize_t start, Py_ssize_t stop, bint persistent, int64_t now,
            bint whole=False):
        """``(hits, reply records)``: the get_bulk reply records of the live keys, in order
        (``whole``: the whole reply, head included); None when the engine failed (other than
        a missing record)."""
        return self._get(<void*>handle, start, stop, persistent, now, 5 if whole else 0)

    cdef object _get(self, void* db, Py_ssize_t start, Py_ssize_t stop, bint persistent,
                     int64_t now, size_t head):
        """``get``; ``head`` bytes are left free at the start of the reply records."""
        cdef Py_ssize_t i, hits = 0
        cdef size_t cap, used, need, room
        cdef char* out
        cdef char* grown
        cdef char* rec
        cdef Rec* r
        cdef int32_t n
        cdef int64_t xt
        cdef int failed = 0
        cap = head
        used = head
        for i in range(start, stop):
            cap += SET_HEAD + self.recs[i].ksiz + 128
        cap += 4096
        out = <char*>malloc(cap)
        if out == NULL:
            raise MemoryError()
        try:
            with nogil:
                for i in range(start, stop):
                    r = &self.recs[i]
                    while True:
                        need = used + SET_HEAD + r.ksiz
                        if need + XTWIDTH + 64 > cap:
                            cap = (need + XTWIDTH + 64) * 2
                            grown = <char*>realloc(out, cap)
                            if grown == NULL:
                                failed = 2
                                break
                            out = grown
                        room = cap - need
                        n = _kcdbgetbuf(db, self.data + r.koff, r.ksiz, out + need, room)
                        if n < 0 or <size_t>n <= room:
                            break
                        cap = need + <size_t>n + cap  # too small: grow and read it again
                        grown = <char*>realloc(out, cap)
                        if grown == NULL:
                            failed = 2
                            break
                        out = grown
                    if failed:
                        break
                    if n < 0:
                        if _kcdbecode(db) != NOREC:
                            failed = 1
                            break
                        continue
                    rec = out + used
                    if persistent:
                        xt = INT64MAX
                    else:
                        if n < XTWIDTH:
                            continue
                        xt = _read_xt(rec + SET_HEAD + r.ksiz)
                        if now > xt:
                            continue
                        n -= XTWIDTH
                        memmove(rec + SET_HEAD + r.ksiz, rec + SET_HEAD + r.ksiz + XTWIDTH, n)
                    rec[0] = <char>(r.dbidx >> 8)
                    rec[1] = <char>r.dbidx
                    _put32(rec + 2, r.ksiz)
                    _put32(rec + 6, <uint32_t>n)
                    _put64(rec + 10, <uint64_t>xt)
                    memcpy(rec + SET_HEAD, self.data + r.koff, r.ksiz)
                    used += SET_HEAD + r.ksiz + <size_t>n
                    hits += 1
            if failed == 2:
                raise MemoryError()
            if failed:
                return None
            if head:
                out[0] = <char>0xBA
                _put32(out + 1, <uint32_t>hits)
            return hits, PyBytes_FromStringAndSize(out, used)
        finally:
            free(out)


cdef Py_ssize_t _parse(Batch batch, const uint8_t* p, Py_ssize_t size, Py_ssize_t pos, int magic,
                       Py_ssize_t want, bint* oversized) except -1:
    """Fill ``batch`` with up to ``want`` complete records of ``p[pos:size]``; the end offset."""
    cdef Py_ssize_t off = pos, start = pos, end, n = 0, cap
    cdef uint32_t ksiz, vsiz
    cdef int head = SET_HEAD if magic == MAGIC_SET_BULK else KEY_HEAD
    cdef Rec* r
    oversized[0] = False
    batch.magic = magic
    cap = want if want < 1024 else 1024
    if cap < 1:
        cap = 1
    batch.recs = <Rec*>malloc(cap * sizeof(Rec))
    if batch.recs == NULL:
        raise MemoryError()
    while n < want:
        if size - off < head:
            break
        ksiz = _u32(p + off + 2)
        vsiz = _u32(p + off + 6) if head == SET_HEAD else 0
        if ksiz > DATA_MAX_SIZE or vsiz > DATA_MAX_SIZE:
            oversized[0] = True
            break
        end = off + head + ksiz + vsiz
        if end > size:
            break
        if n == cap:
            cap *= 2
            r = <Rec*>realloc(batch.recs, cap * sizeof(Rec))
            if r == NULL:
                raise MemoryError()
            batch.recs = r
        r = &batch.recs[n]
        r.dbidx = (<uint16_t>p[off] << 8) | p[off + 1]
        r.koff = <size_t>(off + head - pos)
        r.ksiz = ksiz
        r.voff = r.koff + ksiz
        r.vsiz = vsiz
        if head == SET_HEAD:
            r.xt = <int64_t>((<uint64_t>_u32(p + off + 10) << 32) | _u32(p + off + 14))
        else:
            r.xt = 0
        n += 1
        off = end
    batch.count = n
    batch.data = <char*>malloc(off - start if off > start else 1)
    if batch.data == NULL:
        raise MemoryError()
    memcpy(batch.data, p + start, off - start)
    batch.nbytes = off - start
    return off + head if oversized[0] else off


def parse(buf, Py_ssize_t pos, int magic, Py_ssize_t want):
    """``(batch, end, failure)`` like ``kt_binary.parse_records(buf, pos, magic, want)``:
    up to ``want`` complete records, the offset after them, and ``"oversized"`` when the next
    record announces a size over DATA_MAX_SIZE (``end`` is then after its header)."""
    cdef Py_buffer view
    cdef bint oversized
    cdef Py_ssize_t end
    batch = Batch()
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        end = _parse(batch, <const uint8_t*>view.buf, view.len, pos, magic, want, &oversized)
    finally:
        PyBuffer_Release(&view)
    return batch, end, "oversized" if oversized else None


def serve_small(buf, dbs, int64_t now, Py_ssize_t most):
    """A whole set/remove/get_bulk request of at most ``most`` records, all there and all for
    one database that takes native batches (any database for get_bulk), in one call; None for
    anything else (the caller then takes the general path, which also notes a key with NUL or
    an expiring record on the TimedDB before storing it: such a first request is left to it).

    Returns ``(reply, end, db, magic, records, hits, failed)``: ``failed`` is -1, or the index
    of the record the engine failed on (``reply`` is then None; the error is this thread's).
    """
    cdef Py_buffer view
    cdef const uint8_t* p
    cdef int magic
    cdef uint32_t flags, rnum
    cdef bint oversized, persistent
    cdef Py_ssize_t end, i, hits = 0, failed = -1
    cdef int dbidx
    cdef size_t handle
    cdef char head[5]
    cdef Batch batch
    cdef QueueCore* q
    cdef uint32_t prefix
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        p = <const uint8_t*>view.buf
        if view.len < 9:
            return None
        magic = p[0]
        if magic != 0xB8 and magic != 0xB9 and magic != 0xBA:
            return None
        flags = _u32(p + 1)
        rnum = _u32(p + 5)
        if rnum == 0 or rnum > most:
            return None
        batch = Batch()
        end = _parse(batch, p, view.len, 9, magic, rnum, &oversized)
    finally:
        PyBuffer_Release(&view)
    if oversized or batch.count < rnum:
        return None
    dbidx = batch.recs[0].dbidx
    for i in range(1, batch.count):
        if batch.recs[i].dbidx != dbidx:
            return None
    if dbidx >= len(dbs):
        return None
    db = dbs[dbidx]
    if not (db.native or (magic == 0xBA and db.native_reads)):  # a get logs and evicts nothing
        return None
    persistent = db.persistent
    i = batch.flags(0, batch.count, now) if magic != 0xBA else 0  # a get notes nothing
    if (i & FLAG_NUL_KEY and not db._nul_keys) or (i & FLAG_EXPIRING and not persistent and not db._xtrecs):
        return None
    handle = db.db._db or 0
    if not handle:
        return None
    if magic == 0xBA:
        found = batch._get(<void*>handle, 0, batch.count, persistent, now, 5)
        if found is None:
            return None, end, db, magic, batch.count, 0, 0
        return found[1], end, db, magic, batch.count, found[0], -1
    log = db.native_log  # the database's update log (TimedDB.native_log), or None
    q = NULL
    prefix = 0
    if log is not None:
        q = _core(log.queue)
        prefix = log.prefix()
    try:
        if magic == 0xB8:
            failed = batch._set(<void*>handle, 0, batch.count, persistent, now, q, prefix)
            if failed == -2:
                raise MemoryError()
            hits = batch.count if failed < 0 else failed
        else:
            hits = batch._remove(<void*>handle, 0, batch.count, persistent, now, q, prefix)
            if hits == -2:
                raise MemoryError()
            if hits < 0:
                failed = batch.count - 1
                hits = 0
    finally:
        if log is not None:
            log.flush()  # the log is written before the reply
    if failed >= 0:
        return None, end, db, magic, batch.count, hits, failed
    if flags & 1:
        return b"", end, db, magic, batch.count, hits, -1
    head[0] = <char>magic
    _put32(head + 1, <uint32_t>hits)
    return PyBytes_FromStringAndSize(head, 5), end, db, magic, batch.count, hits, -1
