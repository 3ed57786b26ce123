"""A small model layer over a Tokyo Tyrant table database (coleifer/kt 0.9.6's ``kt.models``).

A ``Model`` subclass declares typed fields; each instance is one table record whose primary
key is ``key`` and whose columns are the other fields.  Fields build query expressions with
Python operators (``User.age >= 18``, ``User.name.startswith('a')``), which
``Model.query().filter(...)`` turns into the table database's search conditions::

    db = TableDatabase(port=1978)

    class User(Model):
        __database__ = db
        name = TextField(index=True)
        age = IntegerField(index=True)

    User.create('huey', name='Huey', age=9)
    [u.name for u in User.query().filter(User.age < 10).order_by(User.name).get()]

Values are stored as text columns; numeric fields are stored as decimal text so the
server's numeric conditions and orderings apply.  The layer is built on the public
``TokyoTyrant`` client (``set``/``get``/``search``...), with no wire code of its own.
"""

from __future__ import annotations

import calendar
import copy
import datetime
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

from kt import constants as C
from kt.client import decode, encode
from kt.serializers import KT_NONE
from kt.tokyotyrant import TokyoTyrant, refines_clone

__all__ = [
    "TableDatabase",
    "Expression",
    "Ordering",
    "Field",
    "BytesField",
    "TextField",
    "KeyField",
    "DateTimeField",
    "DateField",
    "IntegerField",
    "FloatField",
    "TimestampField",
    "SearchField",
    "TokenField",
    "BaseModel",
    "Model",
    "ModelSearch",
    "serialize_model",
    "deserialize_into_model",
]


class TableDatabase(TokyoTyrant):
    """A ``TokyoTyrant`` client for models: values travel as raw table records (``KT_NONE``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1978, decode_keys: bool = True, **kwargs: Any):
        kwargs["serializer"] = KT_NONE  # the model layer encodes and decodes columns itself
        super().__init__(host, port, decode_keys=decode_keys, **kwargs)


class Expression(NamedTuple):
    """One search condition: field ``lhs``, operator ``op`` (an ``OP_*`` constant), operand ``rhs``."""

    lhs: Any
    op: int
    rhs: Any


class Ordering(NamedTuple):
    """One ordering: ``field`` and an ``ORDER_*`` constant."""

    field: Any
    value: int


def _condition(op: int) -> Callable[[Any, Any], Expression]:
    def build(self: Field, rhs: Any) -> Expression:
        return Expression(self, op, rhs)

    return build


def _multi_condition(op: int) -> Callable[..., Expression]:
    def build(self: Field, *rhs: Any) -> Expression:
        return Expression(self, op, rhs)

    return build


class Field:
    """A column of a model.  ``index=True`` makes ``Model.create_indexes`` index it;
    ``default`` (a value or a callable) fills new instances."""

    _index_type = C.INDEX_STR
    _order_asc = C.ORDER_STR_ASC
    _order_desc = C.ORDER_STR_DESC

    def __init__(self, index: bool = False, default: Any = None) -> None:
        self._index = index
        self._default = default
        self.name: Optional[str] = None
        self.model: Any = None

    def deserialize(self, raw_value: bytes) -> Any:
        return raw_value

    def serialize(self, value: Any) -> bytes:
        return value

    def asc(self) -> Ordering:
        return Ordering(self, self._order_asc)

    def desc(self) -> Ordering:
        return Ordering(self, self._order_desc)

    def add_to_class(self, model: type, name: str) -> None:
        self.model = model
        self.name = name
        setattr(model, name, self)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return instance.__data__.get(self.name)

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__data__[self.name] = value

    __hash__ = object.__hash__  # the comparison operators below build expressions

    def __repr__(self) -> str:
        owner = self.model.__name__ if self.model is not None else "?"
        return f"<{type(self).__name__} {owner}.{self.name}>"


class BytesField(Field):
    """Raw bytes; string conditions."""

    __eq__ = _condition(C.OP_STR_EQ)  # type: ignore[assignment]
    __ne__ = _condition(C.OP_STR_EQ | C.OP_NEGATE)  # type: ignore[assignment]
    contains = _condition(C.OP_STR_CONTAINS)
    startswith = _condition(C.OP_STR_STARTSWITH)
    endswith = _condition(C.OP_STR_ENDSWITH)
    contains_all = _multi_condition(C.OP_STR_ALL)
    contains_any = _multi_condition(C.OP_STR_ANY)
    contains_any_exact = _multi_condition(C.OP_STR_ANYEXACT)
    regex = _condition(C.OP_STR_REGEX)
    __hash__ = Field.__hash__


class TextField(BytesField):
    """Text, stored as UTF-8."""

    def deserialize(self, raw_value: bytes) -> Any:
        return decode(raw_value)

    def serialize(self, value: Any) -> bytes:
        return encode(value)


class KeyField(TextField):
    """The record's primary key (every model has one, named ``key``)."""

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__data__[self.name] = value
        instance.__key__ = value


class DateTimeField(BytesField):
    """A ``datetime``, stored as ISO-like text (sorts in time order)."""

    _format = "%Y-%m-%dT%H:%M:%S.%f"

    def deserialize(self, raw_value: bytes) -> Any:
        return datetime.datetime.strptime(decode(raw_value), self._format)

    def serialize(self, value: Any) -> bytes:
        return encode(value.strftime(self._format))


class DateField(DateTimeField):
    """A ``date``, stored as ``YYYY-MM-DD``."""

    _format = "%Y-%m-%d"

    def deserialize(self, raw_value: bytes) -> Any:
        return super().deserialize(raw_value).date()


class IntegerField(Field):
    """An integer, stored as decimal text; numeric conditions, index and ordering."""

    _index_type = C.INDEX_NUM
    _order_asc = C.ORDER_NUM_ASC
    _order_desc = C.ORDER_NUM_DESC

    __eq__ = _condition(C.OP_NUM_EQ)  # type: ignore[assignment]
    __ne__ = _condition(C.OP_NUM_EQ | C.OP_NEGATE)  # type: ignore[assignment]
    __gt__ = _condition(C.OP_NUM_GT)
    __ge__ = _condition(C.OP_NUM_GE)
    __lt__ = _condition(C.OP_NUM_LT)
    __le__ = _condition(C.OP_NUM_LE)
    between = _multi_condition(C.OP_NUM_BETWEEN)  # both ends included
    matches_any = _multi_condition(C.OP_NUM_ANYEXACT)
    __hash__ = Field.__hash__

    def deserialize(self, raw_value: bytes) -> Any:
        return int(decode(raw_value))

    def serialize(self, value: Any) -> bytes:
        return encode(str(value))


class FloatField(IntegerField):
    """A float, stored as decimal text."""

    def deserialize(self, raw_value: bytes) -> Any:
        return float(decode(raw_value))


class TimestampField(IntegerField):
    """A ``datetime`` stored as microseconds since the epoch (UTC unless ``utc=False``).

    Also accepts a ``date`` (midnight) or an int (seconds) when saving.
    """

    def __init__(self, utc: bool = True, *args: Any, **kwargs: Any) -> None:
        self._utc = utc
        super().__init__(*args, **kwargs)

    def deserialize(self, raw_value: bytes) -> Any:
        seconds, micros = divmod(int(decode(raw_value)), 1000000)
        if self._utc:
            moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None)
        else:
            moment = datetime.datetime.fromtimestamp(seconds)
        return moment.replace(microsecond=micros)

    def serialize(self, value: Any) -> bytes:
        if isinstance(value, int) and not isinstance(value, bool):
            return encode(str(value * 1000000))
        if not isinstance(value, datetime.datetime):  # a date: its midnight
            value = datetime.datetime(value.year, value.month, value.day)
        if self._utc:
            seconds = calendar.timegm(value.utctimetuple())
        else:
            seconds = int(time.mktime(value.timetuple()))
        return encode(str(seconds * 1000000 + value.microsecond))


class SearchField(Field):
    """Text with full-text conditions (q-gram index)."""

    _index_type = C.INDEX_QGRAM
    __eq__ = _condition(C.OP_STR_EQ)  # type: ignore[assignment]
    __ne__ = _condition(C.OP_STR_EQ | C.OP_NEGATE)  # type: ignore[assignment]
    match = _condition(C.OP_FTS_PHRASE)
    match_all = _multi_condition(C.OP_FTS_ALL)
    match_any = _multi_condition(C.OP_FTS_ANY)
    search = _condition(C.OP_FTS_EXPRESSION)
    __hash__ = Field.__hash__

    def deserialize(self, raw_value: bytes) -> Any:
        return decode(raw_value)

    def serialize(self, value: Any) -> bytes:
        return encode(value)


class TokenField(TextField):
    """Text with a token index (space-separated words)."""

    _index_type = C.INDEX_TOKEN


class BaseModel(type):
    """Collects a model's fields; the class itself maps keys to instances (``User['huey']``)."""

    def __new__(mcs, name: str, bases: Tuple[type, ...], attrs: Dict[str, Any]):
        for base in bases:  # inherited fields: a copy per subclass, bound to it
            for attr, value in vars(base).items():
                if attr not in attrs and isinstance(value, Field):
                    attrs[attr] = copy.deepcopy(value)
        cls = super().__new__(mcs, name, bases, attrs)
        cls.__data__ = None
        fields: Dict[str, Field] = {}
        for attr, value in list(vars(cls).items()):
            if isinstance(value, Field):
                value.add_to_class(cls, attr)
                fields[attr] = value
        cls.__fields__ = fields
        cls.__defaults__ = {n: f._default for n, f in fields.items() if f._default is not None}
        cls.__indexes__ = [f for f in fields.values() if f._index]
        return cls

    def __getitem__(cls, key: Any) -> Any:
        if isinstance(key, (list, tuple, set)):
            return cls.get_list(key)
        return cls.get(key)

    def __setitem__(cls, key: Any, value: Any) -> None:
        if isinstance(value, dict):
            value = cls(**value)
        if value.key and value.key != key:
            raise ValueError(f"the instance's key {value.key!r} differs from the key {key!r} it is stored at")
        cls.__database__.set(key, serialize_model(value)[1])

    def __delitem__(cls, key: Any) -> None:
        if isinstance(key, (list, tuple, set)):
            cls.__database__.remove_bulk(list(key))
        else:
            cls.__database__.remove(key)


def serialize_model(model: Model) -> Tuple[Any, bytes]:
    """``(key, record)``: the instance's columns as a ``col\\0value\\0...`` record."""
    parts = []
    for name, field in model.__fields__.items():
        if name == "key":
            continue
        value = getattr(model, name, None)
        if value is not None:
            parts.append(encode(name) + b"\x00" + field.serialize(value) + b"\x00")
    return model.key, b"".join(parts)


def deserialize_into_model(model_class: Any, key: Any, raw_data: Any) -> Any:
    """An instance of ``model_class`` from a stored record (bytes, or a decoded column dict).

    Columns the model does not declare are kept as text attributes.
    """
    if isinstance(raw_data, dict):
        pairs = [(_as_bytes(c), _as_bytes(v)) for c, v in raw_data.items()]
    else:
        items = bytes(raw_data).split(b"\x00")
        pairs = list(zip(items[0:-1:2], items[1::2]))
    data = {"key": key}
    for column, value in pairs:
        name = decode(column)
        field = model_class.__fields__.get(name)
        data[name] = field.deserialize(value) if field is not None else decode(value)
    return model_class(**data)


def _as_bytes(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


class Model(metaclass=BaseModel):
    """Base class of models; set ``__database__`` to a ``TableDatabase`` (or a ``TokyoTyrant``
    with serializer ``KT_NONE``) on the subclass."""

    __database__: Any = None
    key = KeyField()  # the primary key the instance is stored at

    def __init__(self, **kwargs: Any) -> None:
        self.__data__: Dict[str, Any] = {}
        self.__key__ = None
        for name, default in self.__defaults__.items():
            setattr(self, name, default() if callable(default) else default)
        for name, value in kwargs.items():
            setattr(self, name, value)

    def __getitem__(self, attr: str) -> Any:
        return getattr(self, attr)

    def __setitem__(self, attr: str, value: Any) -> None:
        setattr(self, attr, value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.key}>"

    def save(self) -> bool:
        """Store the instance at its key (``ValueError`` without one)."""
        if not self.key:
            raise ValueError("cannot save a model instance without a key")
        key, record = serialize_model(self)
        return self.__database__.set(key, record)

    def delete(self) -> int:
        """Remove the instance's record (``ValueError`` without a key)."""
        if not self.key:
            raise ValueError("cannot delete a model instance without a key")
        return self.__database__.remove(self.key)

    @classmethod
    def create_indexes(cls, safe: bool = True) -> None:
        """Index every field declared with ``index=True``; ``safe=False`` fails on an existing index."""
        for field in cls.__indexes__:
            cls.__database__.set_index(field.name, field._index_type, not safe)

    @classmethod
    def drop_indexes(cls) -> None:
        for field in cls.__indexes__:
            cls.__database__.delete_index(field.name)

    @classmethod
    def optimize_indexes(cls) -> None:
        for field in cls.__indexes__:
            cls.__database__.optimize_index(field.name)

    @classmethod
    def create(cls, key: Any, **data: Any) -> Any:
        instance = cls(key=key, **data)
        instance.save()
        return instance

    @classmethod
    def get(cls, key: Any) -> Any:
        """The instance stored at ``key``; ``KeyError`` when there is none."""
        record = cls.__database__.get(key)
        if record is None:
            raise KeyError(key)
        return deserialize_into_model(cls, key, record)

    @classmethod
    def get_list(cls, keys: Iterable[Any]) -> List[Any]:
        """The instances stored at ``keys`` (in that order; missing keys are skipped)."""
        keys = list(keys)
        records = cls.__database__.get_bulk(keys)
        return [deserialize_into_model(cls, k, records[k]) for k in keys if k in records]

    @classmethod
    def create_list(cls, models: Iterable[Any]) -> Any:
        return cls.__database__.set_bulk(dict(serialize_model(m) for m in models))

    @classmethod
    def delete_list(cls, keys: Iterable[Any]) -> Any:
        return cls.__database__.remove_bulk(list(keys))

    @classmethod
    def all(cls) -> List[Any]:
        return cls.query().get()

    @classmethod
    def query(cls) -> ModelSearch:
        return ModelSearch(cls)

    @classmethod
    def count(cls) -> int:
        return cls.query().count()


def _operand(field: Field, value: Any) -> bytes:
    """A condition's operand as the server reads it (several values: comma-separated)."""
    if isinstance(value, (list, set, tuple)):
        return b",".join(_operand(field, item) for item in value)
    if isinstance(value, str):
        return encode(value)
    return field.serialize(value)


class ModelSearch:
    """A table query over one model; every method returns a new query (the original is kept)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._conditions: List[Tuple[str, int, bytes]] = []
        self._order_by: List[Tuple[str, int]] = []
        self._limit: Optional[int] = None
        self._offset: Optional[int] = None

    def clone(self) -> ModelSearch:
        twin = ModelSearch(self._model)
        twin._conditions = list(self._conditions)
        twin._order_by = list(self._order_by)
        twin._limit, twin._offset = self._limit, self._offset
        return twin

    @refines_clone
    def filter(self, *expressions: Expression) -> ModelSearch:
        for field, op, value in expressions:
            self._conditions.append((field.name, op, _operand(field, value)))

    @refines_clone
    def order_by(self, *ordering: Any) -> ModelSearch:
        for item in ordering:
            if isinstance(item, Field):
                item = item.asc()
            self._order_by.append((item.field.name, item.value))

    @refines_clone
    def limit(self, limit: Optional[int] = None) -> ModelSearch:
        self._limit = limit

    @refines_clone
    def offset(self, offset: Optional[int] = None) -> ModelSearch:
        self._offset = offset

    def _build_search(self) -> List[Tuple[Any, ...]]:
        search: List[Tuple[Any, ...]] = [("addcond", c, op, v) for c, op, v in self._conditions]
        search += [("setorder", c, order) for c, order in self._order_by]
        if self._limit is not None or self._offset is not None:
            search.append(("setlimit", self._limit or 1 << 31, self._offset or 0))
        return search

    def _search(self, cmd: Optional[str] = None) -> Any:
        return self._model.__database__.search(self._build_search(), cmd)

    def execute(self) -> List[Any]:
        """The keys of the matching records."""
        return self._search()

    def delete(self) -> Any:
        """Remove the matching records."""
        return self._search("out")

    def get(self) -> List[Any]:
        """The matching records as model instances."""
        return [deserialize_into_model(self._model, key, record) for key, record in self._search("get")]

    def count(self) -> int:
        return self._search("count")

    def __iter__(self) -> Iterator[Any]:
        return iter(self.execute())
