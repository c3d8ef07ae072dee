import dataclasses

import pytest

from gan_core.config import FIELD_DOCS, FLAT_KEYS, ConfigError, RunConfig


def test_defaults_are_the_seeds_choices():
    flat = RunConfig().to_flat()
    assert flat["lr_d"] == flat["lr_g"] == 1e-4
    assert flat["clamp"] == "clamp" and flat["clamp_eps"] == 1e-3
    assert flat["clip_d"] == flat["clip_g"] == 1.0
    assert flat["freeze"] == "requires_grad"
    assert flat["zero_grad"] == "both_before_backward"
    assert flat["schedule"] == "adaptive"
    assert (flat["d_loss_threshold"], flat["g_loss_threshold"], flat["rest_k_scale"]) == (1.75, 0.1, 6.0)
    assert flat["g_loss"] == "saturating" and flat["optimiser"] == "adam"
    assert flat["epochs"] == 120


def test_flat_view_round_trips_and_every_key_is_documented():
    cfg = RunConfig().replace(lr_d=3e-4, clip_g="off", g_hidden="128,256", clamp="logits", stop_early=False)
    flat = cfg.to_flat()
    assert flat["clip_g"] == "off" and flat["g_hidden"] == "128,256"
    assert RunConfig.from_flat(flat) == cfg
    assert set(flat) == FLAT_KEYS
    assert set(FIELD_DOCS) == FLAT_KEYS, FLAT_KEYS - set(FIELD_DOCS)


def test_strings_are_coerced_like_cli_values():
    cfg = RunConfig().replace(lr_d="1e-3", epochs="5", stop_early="false", clip_d="0.5")
    assert (cfg.optim.lr_d, cfg.budget.epochs, cfg.budget.stop_early, cfg.pitfalls.clip_d) == (1e-3, 5, False, 0.5)


@pytest.mark.parametrize("key, value, message", [
    ("lr_d", -1, "lr_d must be > 0, got -1"),
    ("lr_g", 0, "lr_g must be > 0, got 0"),
    ("epochs", 0, "epochs must be > 0, got 0"),
    ("clamp", "sometimes", "clamp must be one of none, clamp, logits; got 'sometimes'"),
    ("freeze", "ice", "freeze must be one of requires_grad, eval_only; got 'ice'"),
    ("lr_d", "fast", "lr_d must be a number, got 'fast'"),
    ("epochs", 2.5, "epochs must be an integer, got 2.5"),
    ("clip_d", "big", "clip_d must be a number or 'off', got 'big'"),
    ("beta1", 1.0, "beta1 must be in [0, 1), got 1.0"),
    ("device", "tpu", "device must be auto, cpu, cuda or cuda:N; got 'tpu'"),
    ("warp_speed", 9, "unknown key 'warp_speed'"),
])
def test_bad_values_give_one_line_errors(key, value, message):
    with pytest.raises(ConfigError) as info:
        RunConfig().replace(**{key: value})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().seed = 3
