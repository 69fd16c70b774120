"""Recipes and overrides: typed values, unknown keys with suggestions."""

from __future__ import annotations

import pytest

from densemarks.recipes import config as cfg
from densemarks.core.errors import DataError


def test_recipes_load():
    assert set(cfg.recipe_names()) >= {"seed", "baseline", "fast-cpu"}
    seed = cfg.load_recipe("seed")
    assert (seed.model, seed.loss, seed.optimizer, seed.scheduler, seed.epochs) == ("resnet50", "l1", "adamw", "plateau", 40)
    assert seed.lr == pytest.approx(3e-4) and seed.augment.size == (224, 224)
    assert seed.augment.border_threshold == 9 and seed.augment.flip_p == 0.5 and seed.augment.rotate_deg == 30
    baseline = cfg.load_recipe("baseline")
    assert (baseline.model, baseline.loss, baseline.augment.size, baseline.augment.crop) == ("resnet18", "mse", (128, 128), "cover")
    assert baseline.augment.border_threshold is None
    assert cfg.load_recipe("fast-cpu").model == "mobilenet_v2"


def test_the_accurate_recipe_keeps_its_time_limit_and_loads_by_its_earlier_name():
    accurate = cfg.load_recipe("accurate-cpu")
    assert (accurate.head, accurate.time_limit) == ("heatmap", "30m")
    assert cfg.load_recipe("heatmap-cpu") == accurate


def test_overrides_are_typed():
    config = cfg.apply_overrides(cfg.load_recipe("seed"), cfg.parse_overrides(
        ["lr=1e-3", "epochs=5", "amp=false", "augment.size=[166, 128]", "augment.flip_p=0", "model=resnet18",
         "augment.border_threshold=null"]), "test")
    assert config.lr == 1e-3 and config.epochs == 5 and config.amp is False
    assert config.augment.size == (166, 128) and config.augment.flip_p == 0.0 and config.model == "resnet18"
    assert config.augment.border_threshold is None


@pytest.mark.parametrize("item, words", [
    ("lerning_rate=1", "did you mean 'lr'"), ("augment.flip=0.5", "did you mean 'flip_p'"),
    ("epochs=many", "expected a whole number"), ("amp=maybe", "expected true or false"), ("augment.crop=zoom", "augment.crop=.zoom. is not one of cover, fit or stretch"),
    ("nokey", "not key=value"), ("augmnt.flip_p=1", "did you mean 'augment'"),
    ("loss=l2", "did you mean 'l1'"), ("scheduler=cosine", "not one of"), ("mode=frozen", "not one of"),
])
def test_bad_overrides(item, words):
    with pytest.raises((DataError, ValueError), match=words):
        cfg.apply_overrides(cfg.TrainConfig(), cfg.parse_overrides([item]), "test")


def test_unknown_recipe_suggests():
    with pytest.raises(DataError, match="did you mean 'seed'"):
        cfg.load_recipe("sed")


def test_dict_round_trip():
    config = cfg.load_recipe("fast-cpu")
    assert cfg.from_dict(cfg.to_dict(config)) == config


def test_durations():
    assert cfg.parse_duration("30m") == 1800 and cfg.parse_duration("2h") == 7200
    assert cfg.parse_duration("") is None
    with pytest.raises(DataError):
        cfg.parse_duration("soon")
