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


ctypedef struct RemoveState:
    int64_t now
    int persistent
    int hit


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


def sweep(size_t cursor, Py_ssize_t steps, int64_t now):
    """Up to ``steps`` records from the cursor on, each removed when expired at ``now``, the
    GIL released: ``steps``, or how many were visited before the cursor ran out (or failed)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(steps):
            if not _kccuraccept(<void*>cursor, _purge_full, &now, 1, 1):
                break
        else:
            i = steps
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

    def set(self, size_t handle, Py_ssize_t start, Py_ssize_t stop, bint persistent, int64_t now):
        """kcdbset each record in order, the GIL released; -1, or the index that failed."""
        cdef Py_ssize_t failed = self._set(<void*>handle, start, stop, persistent, now)
        if failed == -2:
            raise MemoryError()
        return failed

    cdef Py_ssize_t _set(self, void* db, Py_ssize_t start, Py_ssize_t stop, bint persistent,
                         int64_t now) noexcept:
        cdef Py_ssize_t i, failed = -1
        cdef uint32_t maxv = 0
        cdef char* scratch
        cdef Rec* r
        cdef int64_t xt
        cdef int32_t ok
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
                    ok = _kcdbset(db, self.data + r.koff, r.ksiz, self.data + r.voff, r.vsiz)
                else:
                    xt = _stored_xt(r.xt, now)
                    scratch[0] = <char>(xt >> 32)
                    scratch[1] = <char>(xt >> 24)
                    scratch[2] = <char>(xt >> 16)
                    scratch[3] = <char>(xt >> 8)
                    scratch[4] = <char>xt
                    memcpy(scratch + XTWIDTH, self.data + r.voff, r.vsiz)
                    ok = _kcdbset(db, self.data + r.koff, r.ksiz, scratch, r.vsiz + XTWIDTH)
                if not ok:
                    failed = i
                    break
        free(scratch)
        return failed

    def remove(self, size_t handle, Py_ssize_t start, Py_ssize_t stop, bint persistent, int64_t now):
        """Remove each key in order (expired ones are purged, not counted): the hits, or -1
        when the engine failed (its error is this thread's)."""
        return self._remove(<void*>handle, start, stop, persistent, now)

    cdef Py_ssize_t _remove(self, void* db, Py_ssize_t start, Py_ssize_t stop, bint persistent,
                            int64_t now) noexcept:
        cdef Py_ssize_t i, hits = 0
        cdef RemoveState st
        cdef Rec* r
        st.now = now
        st.persistent = persistent
        with nogil:
            for i in range(start, stop):
                r = &self.recs[i]
                st.hit = 0
                if not _kcdbaccept(db, self.data + r.koff, r.ksiz, _remove_full, _remove_empty, &st, 1):
                    hits = -1
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
    if magic == 0xB8:
        failed = batch._set(<void*>handle, 0, batch.count, persistent, now)
        if failed == -2:
            raise MemoryError()
        hits = batch.count if failed < 0 else failed
    else:
        hits = batch._remove(<void*>handle, 0, batch.count, persistent, now)
        if hits < 0:
            failed = batch.count - 1
            hits = 0
    if failed >= 0:
        return None, end, db, magic, batch.count, hits, failed
    if flags & 1:
        return b"", end, db, magic, batch.count, hits, -1
    head[0] = <char>magic
    _put32(head + 1, <uint32_t>hits)
    return PyBytes_FromStringAndSize(head, 5), end, db, magic, batch.count, hits, -1
