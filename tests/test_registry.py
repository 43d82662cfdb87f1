import pytest

from mechrare.errors import ConfigError
from mechrare.registry import Registry


def test_register_get_names_and_duplicates():
    reg = Registry("widget")

    @reg.register("a")
    class A:
        pass

    assert reg.get("a") is A and reg.names() == ["a"] and "a" in reg
    reg.add("a", A)  # re-registering the same object is harmless
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", object)
    with pytest.raises(ConfigError, match="unknown widget 'b'; known: a"):
        reg.get("b")


def test_entry_points_are_loaded_lazily(monkeypatch):
    import mechrare.registry as registry_module

    class FakeEP:
        name = "plug"

        def load(self):
            return "loaded"

    calls = []

    def fake_entry_points(group):
        calls.append(group)
        return [FakeEP()]

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points)
    reg = Registry("widget", entry_point_group="mechrare.widgets")
    assert calls == []
    assert reg.get("plug") == "loaded"
    assert calls == ["mechrare.widgets"]
