from __future__ import annotations

import pytest

from glmkit.errors import UsageError
from glmkit.host.settings import resolve_settings


def test_layers_in_order_and_sources_recorded() -> None:
    settings, sources = resolve_settings(
        flags={"port": "9000", "vendor": None},
        config={"port": 8100, "vendor": "cpu", "tp": 2},
        env={"GLMKIT_PORT": "8200", "GLMKIT_MTP": "true"},
    )
    assert settings.port == 9000 and sources["port"] == "flag"
    assert settings.vendor == "cpu" and sources["vendor"] == "invoke.yaml"
    assert settings.mtp is True and sources["mtp"] == "environment"
    assert settings.tp == 2
    assert sources["model"] == "default"


def test_env_is_passed_in_not_read() -> None:
    settings, _ = resolve_settings({}, {}, {})
    assert settings.port == 8000 and settings.host == "127.0.0.1"


def test_bad_number_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="tp: expected a whole number"):
        resolve_settings({"tp": "eight"}, {}, {})
    with pytest.raises(UsageError, match="expected a number"):
        resolve_settings({"gpu_memory_utilization": "lots"}, {}, {})


def test_unknown_config_key() -> None:
    with pytest.raises(UsageError, match="Unknown setting"):
        resolve_settings({}, {"colour": "blue"}, {})


@pytest.mark.parametrize(("name", "value", "choices"), [
    ("engine", "slurm", "mp, dp, ray"), ("restart", "sometimes",
                                         "no, always, unless-stopped, on-failure")])
def test_closed_settings_are_parsed_once_into_their_values(name: str, value: str,
                                                           choices: str) -> None:
    # #29: engine and restart are Literal types, checked where settings are read, from
    # any layer, instead of as strings in the cluster and serve plans.
    for layer in ({"flags": {name: value}}, {"config": {name: value}},
                  {"env": {f"GLMKIT_{name.upper()}": value}}):
        with pytest.raises(UsageError, match=f"--{name} '{value}': choose one of {choices}"):
            resolve_settings(layer.get("flags", {}), layer.get("config"), layer.get("env"))
    settings, _ = resolve_settings({name: "ray" if name == "engine" else "no"})
    assert getattr(settings, name) in choices.split(", ")


def test_nodes_vendor_and_strategy_are_types_parsed_once() -> None:
    """#29: --nodes, --vendor and --strategy are parsed where the settings are read (flag,
    invoke.yaml or GLMKIT_* alike) into types; the code after sees no text to re-check."""
    import pytest

    from glmkit.errors import UsageError
    from glmkit.host.nodes import Nodes
    from glmkit.host.settings import Settings, resolve_settings

    s, _ = resolve_settings({"nodes": "2", "vendor": "nvidia"}, {"strategy": "multi_node_tp"},
                            {})
    assert isinstance(s.nodes, Nodes) and s.nodes.count == 2 and s.nodes.machines == ()
    assert [n.name for n in s.nodes.cluster()] == ["head", "worker1"]
    assert s.vendor == "cuda" and s.strategy == "multi_node_tp"
    real, _ = resolve_settings({}, None, {"GLMKIT_NODES": "head=ssh://10.0.0.1,w1=gpu2"})
    assert real.nodes is not None and real.nodes.count == 2
    assert [n.docker_host for n in real.nodes.machines] == ["ssh://10.0.0.1", "ssh://gpu2"]
    # Back to the text as given, for `invoke config` and a tune's files; built from text
    # in Python, the same types.
    assert real.values()["nodes"] == "head=ssh://10.0.0.1,w1=gpu2"
    assert Settings(**{**real.values(), "vendor": "amd"}) == \
        resolve_settings({"vendor": "rocm"}, None, {"GLMKIT_NODES": str(real.nodes)})[0]
    for flags, message in (({"nodes": "0"}, "--nodes must be a whole number from 1"),
                           ({"nodes": "head"}, "is not NAME=HOST"),
                           ({"vendor": "intel"}, "Unknown vendor 'intel'"),
                           ({"strategy": "tp;rm -rf"}, "Unknown --strategy")):
        with pytest.raises(UsageError, match=message):
            resolve_settings(flags, None, {})
    # A count is any number of machines to plan for; a simulated cluster takes 2 to 16.
    with pytest.raises(UsageError, match="give 2 to 16 nodes"):
        resolve_settings({"nodes": "1"}, None, {})[0].nodes.cluster()  # type: ignore[union-attr]


def test_bad_numbers_and_vendors_are_not_echoed_whole() -> None:
    from glmkit.host.settings import number
    from glmkit.host.vendors import resolve_vendor

    # A pasted wall of text made a 5,000-character "one line".
    for call in (lambda: number("9" * 5000 + "x", int, "context"),
                 lambda: resolve_vendor("x" * 5000)):
        with pytest.raises(UsageError) as err:
            call()
        assert len(str(err.value)) < 200


def test_strategy_takes_every_name_a_synced_recipe_may_give() -> None:
    from pydantic import TypeAdapter

    from glmkit.host.settings import parse_strategy
    from glmkit.knowledge.recipe_schema import Name

    # The schema admits these as strategy names; --strategy refused them by shape, so a
    # synced recipe's strategy (or a tune winner naming it) could not be chosen.
    for name in ("multi-node", "TP8", "dp.v2", "8gpu_tp"):
        assert TypeAdapter(Name).validate_python(name) == name
        assert parse_strategy(name) == name
    for bad in ("", "-x", "a b", "x" * 65, "a\x1b"):
        with pytest.raises(UsageError, match="--strategy"):
            parse_strategy(bad)
