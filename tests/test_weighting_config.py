"""The weighting methods are Hydra `_target_` nodes: `conf/weighting/<name>.yaml` names the class
and holds each of its settings' values, the only place they are written; a missing or unknown
setting is one line naming `weighting.<key>`, and `model.loss` keeps `grad_on` and
`monitor_every` only."""

from __future__ import annotations

import inspect

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from mtst.errors import MtstError
from mtst.weighting import LOSS_KEYS, Weighting, build_weighting, loss_settings
from mtst.weighting.fixed import Fixed
from mtst.weighting.gradient import GradientWeighting
from tests.conftest import (
    WEIGHTING_OPTIONS,
    compose_config,
    make_datamodule,
    make_module,
    weighting_config,
)

# what the module passes (weights, and grad_on to a gradient-level method): not the YAML's
PASSED = {"self", "weights", "grad_on"}


@pytest.mark.parametrize("name", WEIGHTING_OPTIONS)
def test_each_yaml_names_its_class_and_holds_every_setting_it_takes(name: str) -> None:
    node = weighting_config(name)
    method = get_class(node.pop("_target_"))
    assert issubclass(method, Weighting) and method.name == name  # the HPARAMS `weighting` value
    params = {n: p for n, p in inspect.signature(method).parameters.items() if n not in PASSED}
    assert set(node) == set(params), name
    # keyword-only, and no value in code: the YAML is the one place a default lives
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
               for p in params.values()), params
    assert not hasattr(method, "options") and not hasattr(method, "settings")
    built = build_weighting(weighting_config(name), [1.0, 2.0], "parameters")
    assert type(built) is method
    assert getattr(built, "grad_on", None) == ("parameters" if issubclass(method, GradientWeighting)
                                               else None)


def test_the_composed_config_selects_the_method_by_group_and_its_settings_by_key(tmp_path) -> None:
    cfg = compose_config(tmp_path)
    assert cfg.weighting._target_ == "mtst.weighting.fixed.Fixed"  # the default
    assert set(cfg.model.loss) == set(LOSS_KEYS)
    cfg = compose_config(tmp_path, ["weighting=nash_mtl", "weighting.update_every=3",
                                    "model.loss.grad_on=parameters"])
    node = OmegaConf.to_container(cfg.weighting, resolve=True)
    built = build_weighting(node, [1.0, 1.0], cfg.model.loss.grad_on)
    assert (built.name, built.update_every, built.max_norm, built.grad_on) == (
        "nash_mtl", 3, 1.0, "parameters")


def test_the_module_builds_the_node_and_none_is_fixed() -> None:
    dm = make_datamodule()
    assert type(make_module(dm).weighting) is Fixed
    module = make_module(dm, weighting=weighting_config("dwa", temperature=3.0))
    assert (module.weighting.name, module.weighting.temperature) == ("dwa", 3.0)
    assert module.hparams.weighting["_target_"] == "mtst.weighting.dwa.DWA"  # a plain dict
    module = make_module(dm, weighting="pcgrad", loss={"grad_on": "parameters", "monitor_every": 2})
    assert (module.weighting.grad_on, module.monitor_every) == ("parameters", 2)


@pytest.mark.parametrize("node, grad_on, message", [
    ({"_target_": "mtst.weighting.dwa.DWA"}, None,
     "weighting.temperature: missing; weighting=dwa takes temperature"),
    ({"_target_": "mtst.weighting.famo.FAMO", "lr": 0.1, "gamma": 0.0}, None,
     "weighting.min_losses: missing; weighting=famo takes lr, gamma, min_losses"),
    (weighting_config("rlw", seeds=1), None, "weighting.seeds: no such setting; weighting=rlw takes seed"),
    (weighting_config("fixed", temperature=2.0), None,
     "weighting.temperature: no such setting; weighting=fixed takes no setting"),
    (weighting_config("cagrad", grad_on="parameters"), "parameters",
     "weighting.grad_on: no such setting (it is model.loss.grad_on); weighting=cagrad takes c"),
    (weighting_config("cagrad"), None,
     "model.loss.grad_on: missing; weighting=cagrad takes the tasks' gradients on the "
     "representation or the parameters"),
    (weighting_config("fixed"), "tokens",
     "model.loss.grad_on='tokens': no such option; choose one of representation, parameters"),
    ({"_target_": "mtst.weighting.nope.Nope"}, None, "weighting._target_: Error locating target"),
    ({"_target_": "collections.OrderedDict"}, None,
     "weighting._target_='collections.OrderedDict': not a Weighting"),
])
def test_a_missing_or_unknown_setting_is_one_line(node, grad_on, message) -> None:
    with pytest.raises(MtstError) as err:
        build_weighting(node, [1.0, 1.0], grad_on)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_model_loss_refuses_the_keys_the_method_took_with_it() -> None:
    assert loss_settings(None) == {}
    assert loss_settings({"grad_on": "parameters"}) == {"grad_on": "parameters"}
    for key in ("weighting", "dwa"):
        with pytest.raises(MtstError, match=rf"^model\.loss\.{key}: no such setting; model\.loss "
                                            r"has grad_on, monitor_every \(the method is the "
                                            r"weighting node\)$"):
            loss_settings({key: "dwa"})
    with pytest.raises(MtstError, match=r"^model\.loss\.weighting: no such setting"):
        make_module(make_datamodule(), loss={"weighting": "uncertainty"})
