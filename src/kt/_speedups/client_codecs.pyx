# cython: language_level=3
"""C versions of the clients' hot codec loops (KT binary protocol, TT binary protocol).

Each function here has a pure-Python twin in ``kt.protocol.kt_binary`` / ``kt.protocol.tt_binary``
with identical results; those modules use these when ``kt._native.load("client_codecs")``
answers.  Anything unusual (an error reply, a malformed or oversized field, a key or value that
is not plain ``bytes``/``str``) is handed to the Python twin, so errors are the twin's own.

Reply parsers first walk the record headers to find the reply's end and only then build
objects: a partially received reply costs a header scan, not a second full parse.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_SetItem
from cpython.list cimport PyList_Append
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy


cdef extern from *:
    """
    #if PY_VERSION_HEX < 0x030D0000
    #define kt_new_dict(n) _PyDict_NewPresized(n)
    #else
    #define kt_new_dict(n) PyDict_New()
    #endif
    static inline int kt_is_ascii(const unsigned char* p, Py_ssize_t n) {
        Py_ssize_t i = 0;
        uint64_t acc = 0, word;
        for (; i + 8 <= n; i += 8) { memcpy(&word, p + i, 8); acc |= word; }
        for (; i < n; i++) acc |= p[i];
        return (acc & 0x8080808080808080ULL) == 0;
    }
    """
    dict kt_new_dict(Py_ssize_t)
    bint kt_is_ascii(const uint8_t*, Py_ssize_t) nogil


cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t, Py_UCS4)
    void* PyUnicode_DATA(object)
    bint PyUnicode_IS_ASCII(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    object PyUnicode_DecodeUTF8(const char*, Py_ssize_t, const char*)
    void PyErr_Clear()


cdef enum:
    KT_DATA_MAX = 1 << 28
    KT_MAGIC_SET_BULK = 0xB8
    KT_MAGIC_REMOVE_BULK = 0xB9
    KT_MAGIC_GET_BULK = 0xBA
    TT_MAGIC = 0xC8
    TT_MAX_ARG_SIZE = 1 << 28
    TT_MAX_ARG_NUM = 1 << 20
    TT_MAX_NAME_SIZE = 1024
    TT_CMD_PUT = 0x10
    TT_CMD_PUTNR = 0x18
    TT_CMD_GET = 0x30
    TT_CMD_MGET = 0x31
    TT_CMD_MISC = 0x90


# -- byte helpers ---------------------------------------------------------------------------

cdef inline uint32_t _u32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3]


cdef inline uint64_t _u64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>_u32(p) << 32) | <uint64_t>_u32(p + 4)


cdef inline void _put_u16(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = (v >> 8) & 0xFF
    p[1] = v & 0xFF


cdef inline void _put_u32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = (v >> 24) & 0xFF
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


cdef inline void _put_u64(uint8_t* p, uint64_t v) noexcept nogil:
    _put_u32(p, <uint32_t>(v >> 32))
    _put_u32(p + 4, <uint32_t>v)


cdef inline object _text_or_bytes(const char* p, Py_ssize_t n):
    """``_binary_decode``: UTF-8 text when it is, else the bytes."""
    if kt_is_ascii(<const uint8_t*>p, n):  # most keys: skip the UTF-8 decoder's set-up
        text = PyUnicode_New(n, 127)
        memcpy(PyUnicode_DATA(text), p, n)
        return text
    try:
        return PyUnicode_DecodeUTF8(p, n, NULL)
    except UnicodeDecodeError:
        return PyBytes_FromStringAndSize(p, n)


cdef inline object _piece(const char* p, Py_ssize_t n, bint text):
    if text:
        return _text_or_bytes(p, n)
    return PyBytes_FromStringAndSize(p, n)


cdef class _Reader:
    """A readable view of a parser's buffer: bytes directly, anything else via the buffer API."""

    cdef Py_buffer view
    cdef bint held
    cdef const uint8_t* data
    cdef Py_ssize_t size

    cdef int open(self, object buf) except -1:
        if type(buf) is bytes:
            self.data = <const uint8_t*>PyBytes_AS_STRING(buf)
            self.size = PyBytes_GET_SIZE(buf)
        else:
            PyObject_GetBuffer(buf, &self.view, PyBUF_SIMPLE)
            self.held = True
            self.data = <const uint8_t*>self.view.buf
            self.size = self.view.len
        return 0

    cdef void close(self):
        if self.held:
            PyBuffer_Release(&self.view)
            self.held = False

    def __dealloc__(self):
        self.close()


# -- keys and values to wire bytes ----------------------------------------------------------

cdef inline object _wire_key(object key, object encode_key):
    """bytes as they are, ASCII str as itself (read in place), other str as UTF-8, the rest
    through ``encode_key`` (which must give bytes)."""
    kind = type(key)
    if kind is bytes:
        return key
    if kind is str:
        if PyUnicode_IS_ASCII(key):
            return key
        return (<str>key).encode("utf-8")
    key = encode_key(key)
    if type(key) is not bytes:
        key = b"" + key
    return key


cdef inline const char* _span(object part, Py_ssize_t* size) except NULL:
    """Pointer and length of a bytes or ASCII str part from ``_wire_key``/values."""
    if type(part) is bytes:
        size[0] = PyBytes_GET_SIZE(part)
        return PyBytes_AS_STRING(part)
    size[0] = PyUnicode_GET_LENGTH(part)  # ASCII only (see _wire_key): one byte per character
    return <const char*>PyUnicode_DATA(part)


cdef object _pair(object item):
    """A non-tuple item unpacked by Python itself (so a bad one fails with Python's message)."""
    from kt.protocol.kt_binary import _pair as pair
    return pair(item)


cdef inline object _as_bytes(object value):
    return value if type(value) is bytes else b"" + value


cdef Py_ssize_t _wire_keys(object keys, object encode_key, Py_ssize_t per_key, list parts,
                           Py_ssize_t* largest) except -1:
    """Every key (see ``_wire_key``) appended to ``parts``; returns their size plus ``per_key``
    header bytes each, and raises ``largest`` to the longest."""
    cdef Py_ssize_t total = 0, size
    for key in keys:
        key = _wire_key(key, encode_key)
        _span(key, &size)
        if size > largest[0]:
            largest[0] = size
        total += per_key + size
        PyList_Append(parts, key)
    return total


cdef Py_ssize_t _wire_items(object items, object encode_key, object encode_value, bint bytes_pass_through,
                            Py_ssize_t per_item, list parts, Py_ssize_t* largest) except -1:
    """``(key, value)`` items appended to ``parts`` as key, value, key, value...: keys as in
    ``_wire_key``, values through ``encode_value`` (``bytes`` as they are when
    ``bytes_pass_through``).  Returns their size plus ``per_item`` header bytes each."""
    cdef Py_ssize_t total = 0, ksize, vsize
    for item in items:
        if type(item) is tuple and PyTuple_GET_SIZE(item) == 2:
            key = <object>PyTuple_GET_ITEM(item, 0)
            value = <object>PyTuple_GET_ITEM(item, 1)
        else:
            key, value = _pair(item)
        key = _wire_key(key, encode_key)
        if not (bytes_pass_through and type(value) is bytes):
            value = _as_bytes(encode_value(value))
        _span(key, &ksize)
        vsize = PyBytes_GET_SIZE(value)
        if ksize > largest[0]:
            largest[0] = ksize
        if vsize > largest[0]:
            largest[0] = vsize
        total += per_item + ksize + vsize
        PyList_Append(parts, key)
        PyList_Append(parts, value)
    return total


# -- Kyoto Tycoon: requests -----------------------------------------------------------------

cdef inline bint _in_range(object number, object low, object high):
    return type(number) is int and low <= number <= high


def kt_encode_key_bulk(object magic, object keys, object dbidx, object encode_key, bint no_reply=False):
    """Twin of ``kt_binary.encode_key_bulk``."""
    cdef list parts = []
    cdef Py_ssize_t total = 9, n, size, largest = 0
    cdef const char* p
    if not (_in_range(magic, 0, 0xFF) and _in_range(dbidx, 0, 0xFFFF)):
        from kt.protocol.kt_binary import _py_encode_key_bulk
        return _py_encode_key_bulk(magic, keys, dbidx, encode_key, no_reply)  # raises
    total += _wire_keys(keys, encode_key, 6, parts, &largest)
    n = len(parts)
    if largest > KT_DATA_MAX:
        from kt.protocol.kt_binary import _too_large
        raise _too_large(largest)
    out = PyBytes_FromStringAndSize(NULL, total)
    cdef uint8_t* w = <uint8_t*>PyBytes_AS_STRING(out)
    w[0] = magic
    _put_u32(w + 1, 1 if (no_reply and magic != KT_MAGIC_GET_BULK) else 0)
    _put_u32(w + 5, <uint32_t>n)
    w += 9
    for key in parts:
        p = _span(key, &size)
        _put_u16(w, dbidx)
        _put_u32(w + 2, <uint32_t>size)
        memcpy(w + 6, p, size)
        w += 6 + size
    return out


def kt_encode_key_records(object magic, object records, object flags):
    """Twin of ``kt_binary._encode_key_records`` (``(dbidx, key)`` records: get/remove_bulk)."""
    cdef Py_ssize_t total = 9, size, largest = 0, n
    cdef list rows = records if type(records) is list else list(records)
    n = len(rows)
    if not (_in_range(magic, 0, 0xFF) and _in_range(flags, 0, 0xFFFFFFFF)):
        return _key_records_twin(magic, rows, flags)
    for row in rows:
        if (type(row) is not tuple or PyTuple_GET_SIZE(row) != 2
                or type(<object>PyTuple_GET_ITEM(row, 1)) is not bytes
                or not _in_range(<object>PyTuple_GET_ITEM(row, 0), 0, 0xFFFF)):
            return _key_records_twin(magic, rows, flags)
        size = PyBytes_GET_SIZE(<object>PyTuple_GET_ITEM(row, 1))
        if size > largest:
            largest = size
        total += 6 + size
    if largest > KT_DATA_MAX:
        return _key_records_twin(magic, rows, flags)  # raises
    out = PyBytes_FromStringAndSize(NULL, total)
    cdef uint8_t* w = <uint8_t*>PyBytes_AS_STRING(out)
    w[0] = <uint8_t>magic
    _put_u32(w + 1, <uint32_t>flags)
    _put_u32(w + 5, <uint32_t>n)
    w += 9
    for row in rows:
        key = <object>PyTuple_GET_ITEM(row, 1)
        size = PyBytes_GET_SIZE(key)
        _put_u16(w, <uint32_t>(<object>PyTuple_GET_ITEM(row, 0)))
        _put_u32(w + 2, <uint32_t>size)
        memcpy(w + 6, PyBytes_AS_STRING(key), size)
        w += 6 + size
    return out


cdef object _key_records_twin(object magic, list rows, object flags):
    from kt.protocol.kt_binary import _py_encode_key_records
    return _py_encode_key_records(magic, rows, flags)


def kt_encode_set_bulk_items(object items, object dbidx, object xt, object encode_key, object encode_value,
                             bint no_reply=False, bint bytes_pass_through=False):
    """Twin of ``kt_binary.encode_set_bulk_items``."""
    cdef list parts = []
    cdef Py_ssize_t total = 9, n, ksize, vsize, largest = 0
    cdef const char* p
    cdef int64_t cxt
    if not (_in_range(dbidx, 0, 0xFFFF) and _in_range(xt, -(1 << 63), (1 << 63) - 1)):
        from kt.protocol.kt_binary import _py_encode_set_bulk_items
        return _py_encode_set_bulk_items(items, dbidx, xt, encode_key, encode_value, no_reply,
                                         bytes_pass_through)  # raises
    cxt = xt
    total += _wire_items(items, encode_key, encode_value, bytes_pass_through, 18, parts, &largest)
    n = len(parts) // 2
    if largest > KT_DATA_MAX:
        from kt.protocol.kt_binary import _too_large
        raise _too_large(largest)
    out = PyBytes_FromStringAndSize(NULL, total)
    cdef uint8_t* w = <uint8_t*>PyBytes_AS_STRING(out)
    w[0] = KT_MAGIC_SET_BULK
    _put_u32(w + 1, 1 if no_reply else 0)
    _put_u32(w + 5, <uint32_t>n)
    w += 9
    cdef Py_ssize_t i
    for i in range(0, 2 * n, 2):
        key = parts[i]
        value = parts[i + 1]
        p = _span(key, &ksize)
        vsize = PyBytes_GET_SIZE(value)
        _put_u16(w, dbidx)
        _put_u32(w + 2, <uint32_t>ksize)
        _put_u32(w + 6, <uint32_t>vsize)
        _put_u64(w + 10, <uint64_t>cxt)
        memcpy(w + 18, p, ksize)
        memcpy(w + 18 + ksize, PyBytes_AS_STRING(value), vsize)
        w += 18 + ksize + vsize
    return out


def kt_encode_get_one(object dbidx, object key):
    """Twin of ``kt_binary.encode_get_one``."""
    if type(key) is not bytes or not _in_range(dbidx, 0, 0xFFFF) or PyBytes_GET_SIZE(key) > KT_DATA_MAX:
        from kt.protocol.kt_binary import _py_encode_get_one
        return _py_encode_get_one(dbidx, key)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(key)
    out = PyBytes_FromStringAndSize(NULL, 15 + size)
    cdef uint8_t* w = <uint8_t*>PyBytes_AS_STRING(out)
    w[0] = KT_MAGIC_GET_BULK
    _put_u32(w + 1, 0)
    _put_u32(w + 5, 1)
    _put_u16(w + 9, dbidx)
    _put_u32(w + 11, <uint32_t>size)
    memcpy(w + 15, PyBytes_AS_STRING(key), size)
    return out


def kt_encode_set_one(object dbidx, object key, object value, object xt, bint no_reply=False):
    """Twin of ``kt_binary.encode_set_one``."""
    cdef int64_t cxt
    if (type(key) is not bytes or type(value) is not bytes or not _in_range(dbidx, 0, 0xFFFF)
            or not _in_range(xt, -(1 << 63), (1 << 63) - 1)
            or PyBytes_GET_SIZE(key) > KT_DATA_MAX or PyBytes_GET_SIZE(value) > KT_DATA_MAX):
        from kt.protocol.kt_binary import _py_encode_set_one
        return _py_encode_set_one(dbidx, key, value, xt, no_reply)
    cxt = xt
    cdef Py_ssize_t ksize = PyBytes_GET_SIZE(key), vsize = PyBytes_GET_SIZE(value)
    out = PyBytes_FromStringAndSize(NULL, 27 + ksize + vsize)
    cdef uint8_t* w = <uint8_t*>PyBytes_AS_STRING(out)
    w[0] = KT_MAGIC_SET_BULK
    _put_u32(w + 1, 1 if no_reply else 0)
    _put_u32(w + 5, 1)
    _put_u16(w + 9, dbidx)
    _put_u32(w + 11, <uint32_t>ksize)
    _put_u32(w + 15, <uint32_t>vsize)
    _put_u64(w + 19, <uint64_t>cxt)
    memcpy(w + 27, PyBytes_AS_STRING(key), ksize)
    memcpy(w + 27 + ksize, PyBytes_AS_STRING(value), vsize)
    return out


# -- Kyoto Tycoon: replies ------------------------------------------------------------------

cdef Py_ssize_t _kt_get_bulk_end(const uint8_t* d, Py_ssize_t size, Py_ssize_t pos, int full_head,
                                 uint32_t* hits_out):
    """End of a complete get_bulk reply at ``pos``; -1: incomplete; -2: the twin decides
    (error byte, foreign magic, oversized record).  ``full_head``: the twin reads the whole
    18-byte record header before checking sizes (parse_get_bulk_reply) instead of 10."""
    cdef Py_ssize_t off, need
    cdef uint32_t hits, i, ksiz, vsiz
    if pos < 0:
        return -2
    if size - pos < 5:
        return -2 if size > pos else -1
    if d[pos] != KT_MAGIC_GET_BULK:
        return -2
    hits = _u32(d + pos + 1)
    off = pos + 5
    if size - off < <Py_ssize_t>hits * 18:
        return -1
    need = 18 if full_head else 10
    for i in range(hits):
        if off + need > size:
            return -1
        ksiz = _u32(d + off + 2)
        vsiz = _u32(d + off + 6)
        if ksiz > KT_DATA_MAX or vsiz > KT_DATA_MAX:
            return -2
        off += 18 + ksiz + vsiz
    if off > size:
        return -1
    hits_out[0] = hits
    return off


cdef object _kt_get_bulk(object buf, Py_ssize_t pos, int shape, bint text_keys, bint text_values):
    """shape 0: [(key, value)]; 1: {key: value}; 2: [(dbidx, key, value, xt)]."""
    cdef _Reader r = _Reader()
    cdef Py_ssize_t end, off, kstart
    cdef uint32_t hits = 0, i, ksiz, vsiz
    cdef const char* base
    r.open(buf)
    try:
        end = _kt_get_bulk_end(r.data, r.size, pos, shape == 2, &hits)
        if end == -1:
            return None
        if end == -2:
            return _kt_twin(shape, buf, pos, text_keys, text_values)
        base = <const char*>r.data
        off = pos + 5
        if shape == 1:
            result = kt_new_dict(hits)
            for i in range(hits):
                ksiz = _u32(r.data + off + 2)
                vsiz = _u32(r.data + off + 6)
                kstart = off + 18
                PyDict_SetItem(result, _piece(base + kstart, ksiz, text_keys),
                               _piece(base + kstart + ksiz, vsiz, text_values))
                off = kstart + ksiz + vsiz
        else:
            result = []
            for i in range(hits):
                ksiz = _u32(r.data + off + 2)
                vsiz = _u32(r.data + off + 6)
                kstart = off + 18
                key = PyBytes_FromStringAndSize(base + kstart, ksiz)
                value = PyBytes_FromStringAndSize(base + kstart + ksiz, vsiz)
                if shape == 0:
                    PyList_Append(result, (key, value))
                else:
                    PyList_Append(result, ((r.data[off] << 8) | r.data[off + 1], key, value,
                                           <int64_t>_u64(r.data + off + 10)))
                off = kstart + ksiz + vsiz
        return result, end
    finally:
        r.close()


cdef object _kt_twin(int shape, object buf, Py_ssize_t pos, bint text_keys, bint text_values):
    from kt.protocol import kt_binary
    if shape == 0:
        return kt_binary._py_parse_get_bulk_pairs(buf, pos)
    if shape == 1:
        return kt_binary._py_parse_get_bulk_dict(buf, pos, text_keys, text_values)
    return kt_binary._py_parse_get_bulk_reply(buf, pos)


def kt_parse_get_bulk_pairs(object buf, Py_ssize_t pos=0):
    """Twin of ``kt_binary.parse_get_bulk_pairs``."""
    return _kt_get_bulk(buf, pos, 0, False, False)


def kt_parse_get_bulk_reply(object buf, Py_ssize_t pos=0):
    """Twin of ``kt_binary.parse_get_bulk_reply``."""
    return _kt_get_bulk(buf, pos, 2, False, False)


def kt_parse_get_bulk_dict(object buf, Py_ssize_t pos=0, bint text_keys=True, bint text_values=False):
    """Twin of ``kt_binary.parse_get_bulk_dict``."""
    return _kt_get_bulk(buf, pos, 1, text_keys, text_values)


def kt_parse_get_value_reply(object buf, Py_ssize_t pos=0):
    """Twin of ``kt_binary.parse_get_value_reply`` (a found record; the rest goes to the twin)."""
    cdef const uint8_t* d
    cdef Py_ssize_t size, end
    cdef uint32_t ksiz, vsiz
    if type(buf) is bytes:
        d = <const uint8_t*>PyBytes_AS_STRING(buf)
        size = PyBytes_GET_SIZE(buf)
        if (pos >= 0 and size - pos >= 23 and d[pos] == KT_MAGIC_GET_BULK and _u32(d + pos + 1) == 1):
            ksiz = _u32(d + pos + 7)
            vsiz = _u32(d + pos + 11)
            if ksiz <= KT_DATA_MAX and vsiz <= KT_DATA_MAX:
                end = pos + 23 + ksiz + vsiz
                if end > size:
                    return None
                return PyBytes_FromStringAndSize(<const char*>d + end - vsiz, vsiz), end
    from kt.protocol.kt_binary import _py_parse_get_value_reply
    return _py_parse_get_value_reply(buf, pos)


cdef object _kt_count(object buf, Py_ssize_t pos, int magic):
    cdef const uint8_t* d
    if type(buf) is bytes and pos >= 0 and PyBytes_GET_SIZE(buf) - pos >= 5:
        d = <const uint8_t*>PyBytes_AS_STRING(buf)
        if d[pos] == magic:
            return _u32(d + pos + 1), pos + 5
    from kt.protocol import kt_binary
    if magic == KT_MAGIC_SET_BULK:
        return kt_binary._py_parse_set_bulk_reply(buf, pos)
    return kt_binary._py_parse_remove_bulk_reply(buf, pos)


def kt_parse_set_bulk_reply(object buf, Py_ssize_t pos=0):
    """Twin of ``kt_binary.parse_set_bulk_reply``."""
    return _kt_count(buf, pos, KT_MAGIC_SET_BULK)


def kt_parse_remove_bulk_reply(object buf, Py_ssize_t pos=0):
    """Twin of ``kt_binary.parse_remove_bulk_reply``."""
    return _kt_count(buf, pos, KT_MAGIC_REMOVE_BULK)


# -- Tokyo Tyrant: requests -----------------------------------------------------------------

cdef object _tt_sized_list(bytes head, list parts, Py_ssize_t total):
    """``head`` then every part as ``[size:u32][bytes]``."""
    cdef Py_ssize_t hsize = PyBytes_GET_SIZE(head), size
    cdef const char* p
    out = PyBytes_FromStringAndSize(NULL, hsize + total)
    cdef uint8_t* w = <uint8_t*>PyBytes_AS_STRING(out)
    memcpy(w, PyBytes_AS_STRING(head), hsize)
    w += hsize
    for part in parts:
        p = _span(part, &size)
        _put_u32(w, <uint32_t>size)
        memcpy(w + 4, p, size)
        w += 4 + size
    return out


def tt_encode_mget_keys(object keys, object encode_key):
    """Twin of ``tt_binary.encode_mget_keys``."""
    cdef list parts = []
    cdef Py_ssize_t total = 0, largest = 0
    total += _wire_keys(keys, encode_key, 4, parts, &largest)
    cdef Py_ssize_t count = len(parts)
    if count > TT_MAX_ARG_NUM:
        from kt.protocol.tt_binary import encode_mget
        return encode_mget(parts)  # raises
    head = PyBytes_FromStringAndSize(NULL, 6)
    cdef uint8_t* w = <uint8_t*>PyBytes_AS_STRING(head)
    w[0] = TT_MAGIC
    w[1] = TT_CMD_MGET
    _put_u32(w + 2, <uint32_t>count)
    return _tt_sized_list(head, parts, total)


cdef bytes _tt_misc_head(bytes name, Py_ssize_t opts, Py_ssize_t count):
    cdef Py_ssize_t nsize = PyBytes_GET_SIZE(name)
    head = PyBytes_FromStringAndSize(NULL, 14 + nsize)
    cdef uint8_t* w = <uint8_t*>PyBytes_AS_STRING(head)
    w[0] = TT_MAGIC
    w[1] = TT_CMD_MISC
    _put_u32(w + 2, <uint32_t>nsize)
    _put_u32(w + 6, <uint32_t>opts)
    _put_u32(w + 10, <uint32_t>count)
    memcpy(w + 14, PyBytes_AS_STRING(name), nsize)
    return head


def tt_encode_misc(object name, object args=(), object opts=0):
    """Twin of ``tt_binary.encode_misc`` (plain bytes arguments; anything else goes to the twin)."""
    cdef Py_ssize_t total = 0, size, largest = 0
    if (type(name) is not bytes or not _in_range(opts, 0, 0xFFFFFFFF)
            or (type(args) is not list and type(args) is not tuple)):
        return _tt_misc_twin(name, args, opts)
    cdef list parts = list(args)
    for arg in parts:
        if type(arg) is not bytes:
            return _tt_misc_twin(name, args, opts)
        size = PyBytes_GET_SIZE(arg)
        if size > largest:
            largest = size
        total += 4 + size
    if (len(parts) > TT_MAX_ARG_NUM or largest > TT_MAX_ARG_SIZE
            or PyBytes_GET_SIZE(name) >= TT_MAX_NAME_SIZE):
        return _tt_misc_twin(name, args, opts)
    return _tt_sized_list(_tt_misc_head(name, opts, len(parts)), parts, total)


cdef object _tt_misc_twin(object name, object args, object opts):
    from kt.protocol.tt_binary import _py_encode_misc
    return _py_encode_misc(name, args, opts)


def tt_encode_putlist(object items, object encode_key, object encode_value, bint bytes_pass_through=False):
    """Twin of ``tt_binary.encode_putlist``."""
    cdef list parts = []
    cdef Py_ssize_t total = 0, ksize, vsize, largest = 0
    total += _wire_items(items, encode_key, encode_value, bytes_pass_through, 8, parts, &largest)
    if len(parts) > TT_MAX_ARG_NUM or largest > TT_MAX_ARG_SIZE:
        return _tt_misc_twin(b"putlist", _all_bytes(parts), 0)  # raises
    return _tt_sized_list(_tt_misc_head(b"putlist", 0, len(parts)), parts, total)


def tt_encode_outlist(object keys, object encode_key):
    """Twin of ``tt_binary.encode_outlist``."""
    cdef list parts = []
    cdef Py_ssize_t total = 0, size, largest = 0
    total += _wire_keys(keys, encode_key, 4, parts, &largest)
    if len(parts) > TT_MAX_ARG_NUM or largest > TT_MAX_ARG_SIZE:
        return _tt_misc_twin(b"outlist", _all_bytes(parts), 0)  # raises
    return _tt_sized_list(_tt_misc_head(b"outlist", 0, len(parts)), parts, total)


cdef list _all_bytes(list parts):
    return [p if type(p) is bytes else (<str>p).encode("ascii") for p in parts]


def tt_encode_putnr_items(object items, object encode_key, object encode_value, bint bytes_pass_through=False):
    """Twin of ``tt_binary.encode_putnr_items``."""
    cdef list parts = []
    cdef Py_ssize_t total = 0, ksize, vsize, largest = 0, i
    cdef const char* p
    total += _wire_items(items, encode_key, encode_value, bytes_pass_through, 10, parts, &largest)
    if largest > TT_MAX_ARG_SIZE:
        from kt.protocol.tt_binary import _py_encode_putnr_bulk
        flat = _all_bytes(parts)
        return _py_encode_putnr_bulk(list(zip(flat[::2], flat[1::2])))  # raises
    out = PyBytes_FromStringAndSize(NULL, total)
    cdef uint8_t* w = <uint8_t*>PyBytes_AS_STRING(out)
    for i in range(0, len(parts), 2):
        p = _span(parts[i], &ksize)
        value = parts[i + 1]
        vsize = PyBytes_GET_SIZE(value)
        w[0] = TT_MAGIC
        w[1] = TT_CMD_PUTNR
        _put_u32(w + 2, <uint32_t>ksize)
        _put_u32(w + 6, <uint32_t>vsize)
        memcpy(w + 10, p, ksize)
        memcpy(w + 10 + ksize, PyBytes_AS_STRING(value), vsize)
        w += 10 + ksize + vsize
    return out


def tt_encode_get(object key):
    """Twin of ``tt_binary.encode_get``."""
    if type(key) is not bytes:
        from kt.protocol.tt_binary import _py_encode_get
        return _py_encode_get(key)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(key)
    out = PyBytes_FromStringAndSize(NULL, 6 + size)
    cdef uint8_t* w = <uint8_t*>PyBytes_AS_STRING(out)
    w[0] = TT_MAGIC
    w[1] = TT_CMD_GET
    _put_u32(w + 2, <uint32_t>size)
    memcpy(w + 6, PyBytes_AS_STRING(key), size)
    return out


def tt_encode_put(object key, object value):
    """Twin of ``tt_binary.encode_put``."""
    if (type(key) is not bytes or type(value) is not bytes or PyBytes_GET_SIZE(key) > TT_MAX_ARG_SIZE
            or PyBytes_GET_SIZE(value) > TT_MAX_ARG_SIZE):
        from kt.protocol.tt_binary import _py_encode_put
        return _py_encode_put(key, value)
    cdef Py_ssize_t ksize = PyBytes_GET_SIZE(key), vsize = PyBytes_GET_SIZE(value)
    out = PyBytes_FromStringAndSize(NULL, 10 + ksize + vsize)
    cdef uint8_t* w = <uint8_t*>PyBytes_AS_STRING(out)
    w[0] = TT_MAGIC
    w[1] = TT_CMD_PUT
    _put_u32(w + 2, <uint32_t>ksize)
    _put_u32(w + 6, <uint32_t>vsize)
    memcpy(w + 10, PyBytes_AS_STRING(key), ksize)
    memcpy(w + 10 + ksize, PyBytes_AS_STRING(value), vsize)
    return out


# -- Tokyo Tyrant: replies ------------------------------------------------------------------

cdef Py_ssize_t _tt_list_end(const uint8_t* d, Py_ssize_t size, Py_ssize_t pos, int pairs,
                             uint32_t* count_out):
    """End of a complete ``[code][count]`` list reply (``pairs``: mget's ``[ksiz][vsiz]`` records);
    -1: incomplete; -2: the twin decides (bad code, negative count or size)."""
    cdef Py_ssize_t off
    cdef int32_t count, a, b
    cdef int32_t i
    if pos < 0:
        return -2
    if size - pos < 5:
        if size > pos and d[pos] > 1:
            return -2
        return -1
    if d[pos] > 1:
        return -2
    count = <int32_t>_u32(d + pos + 1)
    if count < 0:
        return -2
    off = pos + 5
    for i in range(count):
        if pairs:
            if off + 8 > size:
                return -1
            a = <int32_t>_u32(d + off)
            b = <int32_t>_u32(d + off + 4)
            if a < 0 or b < 0:
                return -2
            off += 8 + <Py_ssize_t>a + b
        else:
            if off + 4 > size:
                return -1
            a = <int32_t>_u32(d + off)
            if a < 0:
                return -2
            off += 4 + <Py_ssize_t>a
    if off > size:
        return -1
    count_out[0] = <uint32_t>count
    return off


cdef object _tt_mget(object buf, Py_ssize_t pos, bint as_dict, bint text_keys, bint text_values):
    cdef _Reader r = _Reader()
    cdef Py_ssize_t end, off, kstart
    cdef uint32_t count = 0, i, ksiz, vsiz
    cdef const char* base
    r.open(buf)
    try:
        end = _tt_list_end(r.data, r.size, pos, True, &count)
        if end == -1:
            return None
        if end == -2 or r.data[pos] != 0:  # failures (code 1): the twin raises ServerError
            from kt.protocol import tt_binary
            if as_dict:
                return tt_binary._py_parse_mget_dict(buf, pos, text_keys, text_values)
            return tt_binary._py_parse_mget(buf, pos)
        base = <const char*>r.data
        off = pos + 5
        result = kt_new_dict(count) if as_dict else []
        for i in range(count):
            ksiz = _u32(r.data + off)
            vsiz = _u32(r.data + off + 4)
            kstart = off + 8
            if as_dict:
                PyDict_SetItem(result, _piece(base + kstart, ksiz, text_keys),
                               _piece(base + kstart + ksiz, vsiz, text_values))
            else:
                PyList_Append(result, (PyBytes_FromStringAndSize(base + kstart, ksiz),
                                       PyBytes_FromStringAndSize(base + kstart + ksiz, vsiz)))
            off = kstart + ksiz + vsiz
        return result, end
    finally:
        r.close()


def tt_parse_mget(object buf, Py_ssize_t pos=0):
    """Twin of ``tt_binary.parse_mget``."""
    return _tt_mget(buf, pos, False, False, False)


def tt_parse_mget_dict(object buf, Py_ssize_t pos=0, bint text_keys=True, bint text_values=False):
    """Twin of ``tt_binary.parse_mget_dict``."""
    return _tt_mget(buf, pos, True, text_keys, text_values)


def tt_parse_misc(object buf, Py_ssize_t pos=0):
    """Twin of ``tt_binary.parse_misc``."""
    cdef _Reader r = _Reader()
    cdef Py_ssize_t end, off
    cdef uint32_t count = 0, i, size
    cdef const char* base
    r.open(buf)
    try:
        end = _tt_list_end(r.data, r.size, pos, False, &count)
        if end == -1:
            return None
        if end == -2:
            from kt.protocol.tt_binary import _py_parse_misc
            return _py_parse_misc(buf, pos)
        if r.data[pos]:
            return None, end
        base = <const char*>r.data
        off = pos + 5
        items = []
        for i in range(count):
            size = _u32(r.data + off)
            PyList_Append(items, PyBytes_FromStringAndSize(base + off + 4, size))
            off += 4 + size
        return items, end
    finally:
        r.close()


def tt_parse_get(object buf, Py_ssize_t pos=0):
    """Twin of ``tt_binary.parse_get`` (a found value; the rest goes to the twin)."""
    cdef const uint8_t* d
    cdef Py_ssize_t size, end
    cdef int32_t vsiz
    if type(buf) is bytes and pos >= 0:
        d = <const uint8_t*>PyBytes_AS_STRING(buf)
        size = PyBytes_GET_SIZE(buf)
        if size - pos >= 5 and d[pos] == 0:
            vsiz = <int32_t>_u32(d + pos + 1)
            if vsiz >= 0:
                end = pos + 5 + vsiz
                if end > size:
                    return None
                return PyBytes_FromStringAndSize(<const char*>d + pos + 5, vsiz), end
    from kt.protocol.tt_binary import _py_parse_get
    return _py_parse_get(buf, pos)


def tt_parse_put(object buf, Py_ssize_t pos=0):
    """Twin of ``tt_binary.parse_put``."""
    if type(buf) is bytes and 0 <= pos < PyBytes_GET_SIZE(buf) and (<const uint8_t*>PyBytes_AS_STRING(buf))[pos] == 0:
        return True, pos + 1
    from kt.protocol.tt_binary import _py_parse_put
    return _py_parse_put(buf, pos)
