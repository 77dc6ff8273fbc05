import importlib.metadata

import pytest

import lwd_gym.registry as registry
from lwd_gym.agents import DPAgent, LDPAgent, LWDAgent, MLPAgent, RandomAgent


def test_builtins_and_make():
    assert {"lwd", "dp", "ldp", "mlp", "random"} <= set(registry.available())
    agent = registry.make("lwd", action_horizon=7, device="cpu")
    assert isinstance(agent, LWDAgent) and agent.action_horizon == 7
    for name, cls in [("dp", DPAgent), ("ldp", LDPAgent), ("mlp", MLPAgent), ("random", RandomAgent)]:
        assert type(registry.make(name, device="cpu")) is cls


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match="available: .*lwd"):
        registry.make("nope")


def test_register_conflict_and_type_check():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("lwd", MLPAgent)
    with pytest.raises(TypeError):
        registry.register("bad", dict)


def test_third_party_entry_point(monkeypatch):
    class PluginAgent(MLPAgent):
        pass

    ep = importlib.metadata.EntryPoint(name="plugin", value="x:y", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata.EntryPoint, "load", lambda self: PluginAgent)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setitem(registry._REGISTRY, "lwd", LWDAgent)  # restore state after the test
    assert "plugin" in registry.available()
    assert isinstance(registry.make("plugin", device="cpu"), PluginAgent)
    registry._REGISTRY.pop("plugin")
