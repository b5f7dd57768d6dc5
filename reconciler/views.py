"""Views that stand for a dict or a tuple without holding it.

A first plan or apply of 300,000 users would hold the same records two or three times over if
every mapping it passes on were a dict: the users a commit writes, each user's source file, the
applied users read on demand, a created user's changes. These views make their values when read,
from what is already held. Each behaves exactly like the dict or tuple it stands for (equality,
hash, length, iteration, membership, the missing key), which ``tests/test_views.py`` checks for
every view the reconciler makes.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Collection, ItemsView, Iterator, Mapping, Sequence
from typing import TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class KeyedView(Mapping[K, V]):
    """The keys of ``keys`` (a set or a mapping: membership and length without making a value),
    each value made by ``value(key)`` when read. ``items``, when given, makes every pair in one
    pass (one query instead of one per key).

    ``value`` raises KeyError for a key it does not know when ``keys`` is where it reads from
    (``checked=False``: one lookup, not a membership test and then a lookup); with ``keys`` a
    subset of what ``value`` reads, the view checks membership first."""

    __slots__ = ("_checked", "_items", "_keys", "_value")

    def __init__(
        self,
        keys: Collection[K],
        value: Callable[[K], V],
        items: Callable[[], Iterator[tuple[K, V]]] | None = None,
        *,
        checked: bool = True,
    ):
        self._keys, self._value, self._items, self._checked = keys, value, items, checked

    def __getitem__(self, key: K) -> V:
        if self._checked and key not in self._keys:
            raise KeyError(key)
        return self._value(key)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[K]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def items(self) -> ItemsView[K, V]:
        return _Pairs(self) if self._items is not None else ItemsView(self)


class _Pairs(ItemsView[K, V]):
    _mapping: KeyedView[K, V]

    def __iter__(self) -> Iterator[tuple[K, V]]:
        items = self._mapping._items
        assert items is not None
        return items()


class OnDemand(Mapping[K, V]):
    """The mapping ``read()`` returns, read the first time anything asks, then kept."""

    __slots__ = ("_mapping", "_read")

    def __init__(self, read: Callable[[], Mapping[K, V]]):
        self._read = read
        self._mapping: Mapping[K, V] | None = None

    def _loaded(self) -> Mapping[K, V]:
        if self._mapping is None:
            self._mapping = self._read()
        return self._mapping

    def __getitem__(self, key: K) -> V:
        return self._loaded()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._loaded()

    def __iter__(self) -> Iterator[K]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


class TupleView(Sequence[T]):
    """The tuple :meth:`_made` returns, made again each time it is read (never kept): equal to
    that tuple, and hashed as it is. A subclass holds, in slots of its own, only what makes it:
    a first plan of 300,000 users holds one small object per user, not their values."""

    __slots__ = ()

    @abstractmethod
    def _made(self) -> tuple[T, ...]:
        """The tuple this view stands for."""

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[T, ...]: ...

    def __getitem__(self, index: int | slice) -> T | tuple[T, ...]:
        return self._made()[index]

    def __iter__(self) -> Iterator[T]:
        return iter(self._made())

    def __len__(self) -> int:
        return len(self._made())

    def __contains__(self, value: object) -> bool:
        return value in self._made()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TupleView):
            other = other._made()
        return self._made() == other

    def __hash__(self) -> int:
        return hash(self._made())

    def __repr__(self) -> str:
        return repr(self._made())
