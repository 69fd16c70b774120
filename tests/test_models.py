"""Backbones (torchvision, timm), weights handling, stages, the regression codec, per-stage
learning rates and freezing."""

from __future__ import annotations

import pytest
import torch

from densemarks.core.errors import DataError
from densemarks.models.backbones import ModelError, backbone_stages, head_and_backbone
from densemarks.models.heads.regression import RegressionCodec, RegressionHead
from densemarks.models.optim import build_optimizer, set_trainable, step_schedule
from densemarks.recipes import config as cfg

from conftest import SHARED_WEIGHTS


def create_model(name: str, num_points: int, weights: str = "none"):
    """A regression network (the head's own factory)."""
    return RegressionHead((64, 64)).network(name, num_points, weights)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "densenet121", "resnext50_32x4d"])
def test_torchvision_models_output_points(name):
    model = create_model(name, num_points=7, weights="none").eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 7, 2)


def test_timm_model_by_name():
    model = create_model("efficientnet_b0", num_points=5, weights="none").eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 5, 2)


@pytest.mark.parametrize("name, expected", [("mobilenet_v2", "features.17"), ("mobilenet_v3_small", "features.11"),
                                            ("efficientnet_b0", "features.7"), ("resnet18", "layer4")])
def test_stride_32_features_before_a_closing_head_conv(name, expected):
    """head_conv=False leaves out a last 1x1 conv block at stride 32 (the classifier's widening);
    a backbone without one (ResNet) keeps its last module."""
    import torchvision

    from densemarks.models.backbones import _last_module_per_stride

    model = torchvision.models.get_model(name)
    with_conv, without = _last_module_per_stride(model), _last_module_per_stride(model, head_conv=False)
    assert without[32] == expected
    assert {s: without[s] for s in (4, 8, 16)} == {s: with_conv[s] for s in (4, 8, 16)}
    assert (with_conv[32] == without[32]) == (name == "resnet18")


def test_unknown_model_suggests():
    with pytest.raises(ModelError, match="did you mean 'resnet50'"):
        create_model("resnt50", 5, weights="none")


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision.models._api as api

    def offline(self, *args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr(api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(ModelError) as err:
        create_model("mobilenet_v2", 5, weights="IMAGENET1K_V1")
    message = str(err.value)
    assert "mobilenet_v2-b0353104.pth" in message and str(tmp_path) in message


def test_unknown_weights_name():
    with pytest.raises(ModelError, match="IMAGENET1K_V1"):
        create_model("mobilenet_v2", 5, weights="imagenet99")


def test_pretrained_weights_load_from_the_cache(torch_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    model = create_model("mobilenet_v2", 5, weights="IMAGENET1K_V1")
    reference = torch.load(SHARED_WEIGHTS, weights_only=True)
    torch.testing.assert_close(model.backbone.features[0][0].weight, reference["features.0.0.weight"])


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_stages_cover_the_backbone_once(name):
    model = create_model(name, 5, weights="none")
    stages = backbone_stages(model.backbone)
    assert len(stages) == 5
    head, backbone = head_and_backbone(model.backbone)
    ids = [id(p) for stage in stages for p in stage]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in backbone}
    last = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert last.out_features == 10 and head[0] is last.weight and head[1] is last.bias


def test_codec_round_trip_and_frame():
    codec = RegressionCodec(height=100, width=80)
    points = torch.tensor([[[-0.5, -0.5], [79.5, 99.5], [39.5, 49.5], [-20.0, 130.0]]])
    encoded = codec.encode(points)
    torch.testing.assert_close(encoded[0, :3], torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))
    torch.testing.assert_close(codec.decode(encoded), points)


def test_per_stage_learning_rates_and_freezing():
    config = cfg.apply_overrides(cfg.TrainConfig(), {"lr": "1.0", "backbone_lr_scale": "0.1",
                                                     "stage_lr_decay": "0.5", "mode": "staged"}, "test")
    model = create_model("resnet18", 5, weights="none")
    lrs = {g["name"]: g["lr"] for g in build_optimizer(model, config).param_groups}
    assert lrs["head"] == 1.0 and lrs["stage4"] == pytest.approx(0.1) and lrs["stage0"] == pytest.approx(0.1 / 16)
    stages = backbone_stages(model.backbone)
    set_trainable(model, config, epoch=0)  # head only
    assert not any(p.requires_grad for s in stages for p in s)
    set_trainable(model, config, epoch=2)  # head + the two top stages
    assert [all(p.requires_grad for p in s) for s in stages] == [False, False, False, True, True]

    def trainable(**overrides):
        set_trainable(model, cfg.apply_overrides(config, overrides, "test"), epoch=9)
        batchnorm_training = [m.training for m in model.backbone.layer1.modules()
                              if isinstance(m, torch.nn.BatchNorm2d)]
        return [any(p.requires_grad for p in s) for s in stages], batchnorm_training

    model.train()
    assert trainable(mode="full", frozen_stages=2) == ([False, False, True, True, True], [False] * 4)
    model.train()
    assert trainable(mode="staged", frozen_stages=1) == ([False, True, True, True, True], [True] * 4)
    model.train()
    assert trainable(mode="full", freeze_batchnorm=True) == ([True] * 5, [False] * 4)  # stats kept, weights learn
    with pytest.raises(DataError, match="frozen_stages=6: this backbone has 5 stages"):
        trainable(frozen_stages=6)


def _one_cycle(total: int = 100):
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=1e-3)
    return optimizer, torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=total)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step()` before `optimizer.step()`")
def test_a_one_cycle_schedule_keeps_up_with_the_time_limit():
    plain, plain_schedule = _one_cycle()
    timed, timed_schedule = _one_cycle()
    for _ in range(30):  # a run that fits its limit steps exactly as one without
        plain_schedule.step()
        step_schedule(timed_schedule, spent=timed_schedule.last_epoch / 200)  # the clock behind the steps
    assert timed.param_groups[0]["lr"] == plain.param_groups[0]["lr"]
    step_schedule(timed_schedule, spent=0.6)  # the clock ran ahead: the schedule jumps to 60% ...
    for _ in range(30):
        plain_schedule.step()
    assert timed_schedule.last_epoch == plain_schedule.last_epoch == 60
    # ... the same rate and momentum as stepping there
    assert timed.param_groups[0]["lr"] == plain.param_groups[0]["lr"]
    assert timed.param_groups[0]["betas"] == plain.param_groups[0]["betas"]
    for _ in range(5):  # at and past the limit it stays at its end, annealed (no error)
        step_schedule(timed_schedule, spent=1.2)
    assert timed_schedule.last_epoch == 100 and timed.param_groups[0]["lr"] < 1e-3 / 1000


def _saved(model, config, num_points: int, path):
    """model saved as a densemarks checkpoint at path."""
    from densemarks.data.scheme import known_scheme
    from densemarks.inference.checkpoint import Checkpoint

    Checkpoint(config, known_scheme(num_points), model.state_dict(), epoch=0).save(path)
    return path


def test_warm_start_takes_a_teachers_backbone_across_heads(tmp_path):
    """init=: a regression student gets every backbone tensor of a heatmap teacher (the names
    differ by the heads' wrappers), BatchNorm statistics included; its own Linear layer is left
    as it was. Another backbone shares nothing and is refused."""
    from densemarks.inference.checkpoint import Checkpoint
    from densemarks.models.heads import create_model as create_any
    from densemarks.training.warm_start import warm_start

    torch.manual_seed(0)
    teacher_config = cfg.load_recipe("accurate-cpu")
    teacher = create_any(teacher_config, 5, "none")
    for module in teacher.modules():  # statistics a fresh model would not have
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_()
    path = _saved(teacher, teacher_config, 5, tmp_path / "teacher.pt")
    student = create_model("mobilenet_v2", 5)
    head_before = {k: v.clone() for k, v in student.state_dict().items() if k.startswith("backbone.classifier")}

    copied, total = warm_start(student, Checkpoint.load(path))

    state, source = student.state_dict(), teacher.state_dict()
    assert (copied, total) == (len(state) - 2, len(state))
    for key, value in state.items():
        if key.startswith("backbone.classifier"):
            assert torch.equal(value, head_before[key])
        else:
            assert torch.equal(value, source[key.replace("backbone.", "backbone.extractor.", 1)]), key

    other = _saved(create_model("resnet18", 5), cfg.load_recipe("fast-cpu"), 5, tmp_path / "resnet.pt")
    with pytest.raises(DataError, match="no layer of this checkpoint"):
        warm_start(create_model("mobilenet_v2", 5), Checkpoint.load(other))


def test_seen_validation_faces_counts_a_start_models_training_faces():
    """A teacher or init model from another split of the same data trained on some of this run's
    validation faces; one of other data (another fingerprint) or without a split counts none."""
    import numpy as np

    from densemarks.data.scheme import known_scheme
    from densemarks.inference.checkpoint import Checkpoint, Split
    from densemarks.training.warm_start import seen_validation_faces

    state = Checkpoint(cfg.TrainConfig(), known_scheme(5), {}, 0, split=Split(0, 0, 0, np.array([1, 2, 3]), 10),
                       fingerprint="abc")
    assert seen_validation_faces(state, "abc", np.array([1, 2, 3])) == 0
    assert seen_validation_faces(state, "abc", np.array([2, 3, 4, 5])) == 2
    assert seen_validation_faces(state, "other data", np.array([4, 5])) == 0
    assert seen_validation_faces(Checkpoint(cfg.TrainConfig(), known_scheme(5), {}, 0), "abc", np.array([4])) == 0
