"""Name -> class registries: the one plug-in pattern of Argus.

Training methods (`training.methods.METHODS`, `--method`), active-learning query strategies
(`active.strategies.STRATEGIES`, `--strategy`) and label aggregators
(`analysis.aggregate.AGGREGATORS`) each keep one `Registry`:

    STRATEGIES = Registry("strategy", base=Strategy, aliases={"kcenter": "coreset"})

    @STRATEGIES.register("margin")
    class Margin(Strategy): ...

    STRATEGIES.build("margin", device="cpu")     # an instance; options go to the constructor
    STRATEGIES.names()                           # sorted names, e.g. for `--help`

A name is registered once (a second class under a taken name is refused), lookups accept any
case and `_` for `-`, and an unknown name is answered with the list of known ones. It lives in
`training`, the lowest layer, because every package may import `training` and `training` imports
nothing of ours; this module imports nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


def normalize_name(name: str) -> str:
    """`" Least_Confidence "` -> `"least-confidence"` (how names are stored and looked up)."""
    return str(name).strip().lower().replace("_", "-")


class Registry(Generic[T]):
    """Named plug-in classes of one kind.

    Args:
        kind: what the entries are, for messages ("training method", "strategy").
        base: every registered class must subclass it (None: anything).
        aliases: other spellings -> registered name (accepted by `get`/`build`, not listed).
    """

    def __init__(self, kind: str, base: type | None = None, aliases: Mapping[str, str] | None = None):
        self.kind = kind
        self.base = base
        self._classes: dict[str, T] = {}
        self._aliases = {normalize_name(k): normalize_name(v) for k, v in (aliases or {}).items()}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: make the class available as `name` (also set as its `name` attribute)."""
        key = normalize_name(name)
        if not key:
            raise ValueError(f"a {self.kind} needs a non-empty name")

        def deco(cls: T) -> T:
            if self.base is not None and not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(f"{self.kind} {key!r}: {cls!r} is not a {self.base.__name__} subclass")
            taken = self._classes.get(key)
            if taken is not None and taken is not cls:
                raise ValueError(f"{self.kind} {key!r} is already registered by {taken.__module__}.{taken.__qualname__}")
            if key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is already an alias of {self._aliases[key]!r}")
            cls.name = key
            self._classes[key] = cls
            return cls

        return deco

    def resolve(self, name: str) -> str:
        """The registered name `name` stands for (normalised, aliases followed); ValueError
        listing the known names when there is none."""
        key = normalize_name(name)
        key = self._aliases.get(key, key)
        if key not in self._classes:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return key

    def get(self, name: str) -> T:
        """The class registered as `name`."""
        return self._classes[self.resolve(name)]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def build(self, name: str, /, **options):
        """An instance of the class registered as `name`, built with `options`."""
        return self.get(name)(**options)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)

    def items(self) -> list[tuple[str, T]]:
        """(name, class) pairs, sorted by name."""
        return sorted(self._classes.items())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = normalize_name(name)
        return self._aliases.get(key, key) in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
