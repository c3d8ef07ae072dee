"""Each pitfall toggle and cure is declared once (gan_core/toggles.py); what must follow from it does,
or one of these fails: the config's fields, the claims, the built-in cures study, the probes, the
engines' equivalence tests and the population engine's own code."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import pytest
from conftest import cure_configs, epoch_record, mixed_configs

from gan_core import config as C
from gan_core import population, toggles
from gan_core.config import CureConfig, RunConfig
from gan_core.population import PopulationTrainer
from gan_core.records import EpochRecord


def test_the_cure_config_holds_exactly_the_declared_cures_in_their_order():
    assert tuple(f.name for f in dataclasses.fields(CureConfig)) == toggles.CURE_KEYS


def test_every_toggle_is_a_member_config_key_whose_on_setting_is_valid_and_not_the_default():
    default = RunConfig().to_flat()
    for t in toggles.TOGGLES:
        assert t.key in C.FLAT_KEYS and C.POPULATION_CLASS[t.key] == C.POPULATION_MEMBER, t.key
        cfg = RunConfig().replace(**{t.key: t.on})
        assert cfg.to_flat()[t.key] != default[t.key], t.key


def test_every_probe_a_toggle_names_is_measured_each_epoch():
    fields = {f.name for f in dataclasses.fields(EpochRecord)}
    missing = [(t.key, p) for t in toggles.TOGGLES for p in t.probes if p not in fields]
    assert not missing, missing


def test_every_toggle_tests_a_claim_and_every_cure_claim_has_its_toggle():
    from sweeps.study.claims import BY_ID, CURES

    assert all(t.claim in BY_ID for t in toggles.TOGGLES)
    assert set(CURES) - {"seed_cures"} == set(toggles.CURE_KEYS)
    assert all(BY_ID[t.key].text == t.text for t in toggles.CURES)


def test_the_cures_study_turns_on_every_declared_cure():
    from sweeps.study.spec import load_spec

    spec, prof = load_spec("cures-study").for_profile("quick")
    configs = [spec.run_config(params, spec.seeds[0], prof) for params in spec.grid()]
    off = CureConfig()
    for key in toggles.CURE_KEYS:
        assert any(getattr(c.cures, key) != getattr(off, key) for c in configs), key


def test_the_equivalence_tests_train_every_toggle_on_both_engines():
    default = RunConfig().to_flat()
    members = [c.to_flat() for c in mixed_configs() + cure_configs()]
    untested = [t.key for t in toggles.TOGGLES if not any(m[t.key] != default[t.key] for m in members)]
    assert not untested, untested


def test_the_population_refuses_a_member_key_its_code_does_not_read(monkeypatch, mnist):
    cfg = RunConfig().replace(dataset="mnist-10k", device="cpu", epochs=1, steps_per_epoch=2)
    PopulationTrainer([cfg, cfg.replace(seed=1)], mnist)  # every MEMBER key is read: accepted
    monkeypatch.setattr(population, "CONSUMES", population.CONSUMES - {"r1_gamma"})
    with pytest.raises(NotImplementedError, match="r1_gamma"):
        PopulationTrainer([cfg, cfg.replace(seed=1)], mnist)


def test_what_the_engine_reads_is_found_in_its_source(tmp_path):
    source = tmp_path / "engine_stub.py"
    source.write_text("def f(c):\n    return c.cures.r1_gamma + c.optim.lr_d, c.seed, c.other.thing\n")
    spec = importlib.util.spec_from_file_location("engine_stub", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules["engine_stub"] = module
    spec.loader.exec_module(module)
    try:
        assert population._config_reads(module) == {"r1_gamma", "lr_d", "seed"}
    finally:
        del sys.modules["engine_stub"]


def test_every_probe_is_required_and_logged_to_mlflow():
    from gan_core.records import METRIC_NAMES

    fields = [f for f in dataclasses.fields(EpochRecord) if f.name != "quality"]
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in fields)
    logged = epoch_record(1).metrics()
    assert {METRIC_NAMES.get(f.name, f.name) for f in fields} - {"epoch"} <= set(logged)


def test_a_trial_s_attributes_are_the_catalogue_s_reductions():
    from gan_core.records import TRIAL_REDUCTIONS, trial_attributes

    history = [epoch_record(1, g_steps=3, grad_d_max=5.0, g_phase_max=2, loss_d=1.0),
               epoch_record(2, g_steps=4, grad_d_max=2.0, g_phase_max=7, loss_d=0.5, g_hung_zero=1)]
    attrs = trial_attributes(history)
    assert set(attrs) == set(TRIAL_REDUCTIONS)
    assert (attrs["g_steps"], attrs["grad_d_peak"], attrs["last_grad_d_max"], attrs["g_phase_max"],
            attrs["last_loss_d"], attrs["g_hung"]) == (7, 5.0, 2.0, 7, 0.5, 1)
    # every cure probe reaches Optuna (and so the report), not only the pitfalls'
    assert {f"last_{p}" for p in toggles.CURE_PROBES} <= set(attrs)


def test_every_label_is_declared_whole_and_the_report_covers_exactly_the_labels():
    """A label is one row of gan_core/judge/labels.py; the report's short heads, the figures' colours and
    the sealed labels follow from it, and a label the atlas never expects a claim to speak of must seal
    a run (only sealed labels can become the atlas's findings, so it would never be shown)."""
    import typing

    from matplotlib.colors import is_color_like

    from gan_core.judge.labels import FAILURES, LABELS, LABELS_DECLARED, SEALED_LABELS, UNDECIDED, Label
    from sweeps.report.atlas import COVERED
    from sweeps.report.data import FAIL
    from sweeps.report.figures import COLORS
    from sweeps.report.page import SHORT

    hints = typing.get_type_hints(Label)
    for label in LABELS_DECLARED:
        for f in dataclasses.fields(Label):
            value = getattr(label, f.name)
            assert isinstance(value, hints[f.name]), (label.name, f.name, value)
            assert not isinstance(value, str) or value.strip(), (label.name, f.name)
        assert is_color_like(label.colour), label.name
        assert label.meaning.endswith("."), label.name  # a sentence
        assert len(label.short) <= 6, label.name  # the terminal's table fits 80 columns
        assert label.seals or label.foreseen, f"{label.name}: unforeseen and never sealed, so never a finding"
    assert len(set(LABELS)) == len(LABELS) and "success" in LABELS and "success" not in FAILURES
    assert len({label.short for label in LABELS_DECLARED}) == len(LABELS)
    assert len(set(COLORS.values())) == len(COLORS)  # no two outcomes share a colour
    assert tuple(SHORT) == LABELS  # the terminal's columns, in the labels' order
    assert set(COLORS) == set(LABELS) | {FAIL}
    assert set(SEALED_LABELS) <= set(FAILURES) | set(UNDECIDED)  # a sealed run is a failure or counted apart
    assert "success" not in UNDECIDED and not set(UNDECIDED) & set(FAILURES)
    assert all(set(covered) <= set(FAILURES) for covered in COVERED.values())
