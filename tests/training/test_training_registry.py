"""The one plug-in registry (training methods, query strategies, aggregators): duplicate names
refused, lookups forgiving about case and `_`, unknown names answered with the list."""

import pytest

from training.registry import Registry


class Base:
    pass


def test_register_build_and_list():
    reg = Registry("widget", base=Base, aliases={"big": "large-one"})

    @reg.register("large_one")
    class Large(Base):
        def __init__(self, size=1):
            self.size = size

    @reg.register("small")
    class Small(Base):
        pass

    assert reg.names() == ["large-one", "small"] and list(reg) == reg.names() and len(reg) == 2
    assert Large.name == "large-one" and reg.get("Large_One") is Large and reg.get("BIG") is Large and reg["small"] is Small
    assert reg.build("large-one", size=3).size == 3
    assert "small" in reg and "big" in reg and "medium" not in reg and 3 not in reg
    assert reg.items() == [("large-one", Large), ("small", Small)]


def test_unknown_name_lists_the_known_ones():
    reg = Registry("widget")
    reg.register("a")(type("A", (), {}))
    reg.register("b")(type("B", (), {}))
    with pytest.raises(ValueError, match=r"unknown widget 'zz'; available: a, b$"):
        reg.get("zz")


def test_duplicates_and_wrong_classes_are_refused():
    reg = Registry("widget", base=Base, aliases={"alias": "a"})
    A = reg.register("a")(type("A", (Base,), {}))
    assert reg.register("a")(A) is A  # re-registering the same class (a module re-import) is fine
    with pytest.raises(ValueError, match="widget 'a' is already registered by .*A"):
        reg.register("A")(type("Other", (Base,), {}))
    with pytest.raises(ValueError, match="already an alias"):
        reg.register("alias")(type("C", (Base,), {}))
    with pytest.raises(TypeError, match="not a Base subclass"):
        reg.register("d")(type("D", (), {}))
    with pytest.raises(ValueError, match="non-empty name"):
        reg.register("  ")


@pytest.mark.parametrize("module, attr, expected", [
    ("training.methods", "METHODS", {"erm", "class-balanced", "focal", "center", "distance-sampling",
                                     "center-distance", "jtt", "groupdro-oracle"}),
    ("active.strategies", "STRATEGIES", {"random", "least-confidence", "margin", "entropy", "bald", "coreset",
                                         "badge", "cluster-margin"}),
    ("analysis.aggregate", "AGGREGATORS", {"mv", "wawa", "ds", "onecoin", "glad"}),
], ids=["methods", "strategies", "aggregators"])
def test_every_plugin_kind_uses_the_registry(module, attr, expected):
    import importlib

    reg = getattr(importlib.import_module(module), attr)
    assert isinstance(reg, Registry) and expected <= set(reg.names())
    assert all(cls.name == name for name, cls in reg.items())
