"""One registry type for everything a config or the command line names: data sets, models, optimizers,
tuners, metrics and reproductions. Each lives beside what it registers; ``curvlab list`` reads them all."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from curvlab.errors import InputError

T = TypeVar("T")


class UnknownName(InputError, KeyError):
    """A name no registry entry has; the message lists the names there are."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Names → entries, each with a one-line description, in registration order.

    ``kind`` names what is registered ("optimizer"), ``label`` the argument or config key that names it
    ("optimizer.name"); both appear in the error for an unknown name, with ``listing``, the command that
    describes every entry.
    """

    def __init__(self, kind: str, label: str, listing: str = "curvlab list"):
        self.kind, self.label, self.listing = kind, label, listing
        self._entries: dict[str, tuple[T, str]] = {}

    def add(self, name: str, entry: T, description: str) -> T:
        """Register ``entry`` under ``name``; a name is registered once."""
        if name in self._entries:
            raise InputError(f"{self.label}: {self.kind} {name!r} is already registered")
        self._entries[name] = (entry, description)
        return entry

    def register(self, name: str, description: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry, description)

    def remove(self, name: str) -> T:
        """Take ``name`` out of the registry (e.g. a metric a test registered); returns its entry."""
        entry = self[name]
        del self._entries[name]
        return entry

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownName(
                f"{self.label}: unknown {self.kind} {name!r}; expected one of {sorted(self._entries)} "
                f"(`{self.listing}` describes them)"
            )
        return self._entries[name][0]

    def description(self, name: str) -> str:
        self[name]  # the error for an unknown name
        return self._entries[name][1]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, entry) pairs in registration order."""
        return ((name, entry) for name, (entry, _) in self._entries.items())

    def described(self) -> Iterator[tuple[str, str]]:
        """(name, description) pairs in registration order, for listings."""
        return ((name, text) for name, (_, text) in self._entries.items())
