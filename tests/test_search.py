"""Search, not only grids: Optuna's pruners in study files and inside populations, the samplers a tuner
expects, pruned runs told apart from the judge's sealed ones everywhere, and a pruned study killed with
kill -9 resumed with nothing lost or run twice."""

from __future__ import annotations

import inspect
import math
import threading
import time
from pathlib import Path

import optuna
import pytest
from conftest import (
    SMALL,
    assert_one_line_error,
    cli,
    finish_here,
    g_params,
    gan_sweep,
    ref_g_params,
    stores,
    watch_study,
)
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

DONE = (TrialState.COMPLETE, TrialState.PRUNED)
SHA = 'kind = "successive_halving"\nmin_resource = 1\nreduction_factor = 2'


def search_file(tmp_path: Path, sampler: str = "random", pruner: str | None = SHA, trials: int = 4,
                seeds: tuple[int, ...] = (0,), epochs: int = 3, steps: int = 3, fixed: str = "",
                space: str | None = None, name: str = "srch") -> Path:
    """`srch.toml`: lr_d and lr_g log-uniform, sampled by `sampler`, pruned by `pruner` (None: none)."""
    path = tmp_path / f"{name}.toml"
    space = space or "lr_d = { log_uniform = [1e-5, 1e-2] }\nlr_g = { log_uniform = [1e-5, 1e-2] }"
    trials_line = f"trials = {trials}" if sampler != "grid" else ""
    path.write_text(f"""
name = "{name}"
seeds = {list(seeds)}
[sampler]
kind = "{sampler}"
seed = 5
{f"[pruner]{chr(10)}{pruner}" if pruner else ""}
[space]
{space}
[fixed]
dataset = "mnist-10k"
{fixed}
[profiles.quick]
epochs = {epochs}
steps_per_epoch = {steps}
eval_samples = 64
{trials_line}
""")
    return path


# -- study files: pruners validated like every other key --------------------------------------------------

def test_every_pruner_parameter_is_optunas_own_name_and_default():
    from sweeps.study.pruners import PRUNERS, REQUIRED

    for kind in PRUNERS.values():
        sig = inspect.signature(getattr(optuna.pruners, kind.optuna))
        theirs = {n: p.default for n, p in sig.parameters.items() if n != "wrapped_pruner"}
        ours = {p.name: (inspect.Parameter.empty if p.default is REQUIRED else p.default) for p in kind.params}
        assert ours == theirs, kind.name


@pytest.mark.parametrize("table, check", [
    ('kind = "median"', lambda p: p._n_startup_trials == 5),
    ('kind = "percentile"\npercentile = 25.0\nn_warmup_steps = 2', lambda p: (p._percentile, p._n_warmup_steps) == (25, 2)),
    ('kind = "successive_halving"', lambda p: p._min_resource == 1),  # auto: 40 // 100, at least 1
    ('kind = "hyperband"\nmin_resource = 2', lambda p: (p._min_resource, p._max_resource) == (2, 40)),  # auto: epochs
    ('kind = "threshold"\nupper = 3000', lambda p: p._upper == 3000.0),
    ('kind = "patient"\npatience = 2\n[pruner.wrapped]\nkind = "median"',
     lambda p: isinstance(p._wrapped_pruner, optuna.pruners.MedianPruner) and p._patience == 2),
    ('kind = "patient"\npatience = 0', lambda p: p._wrapped_pruner is None),
])
def test_each_pruner_is_built_from_its_table_with_auto_resolved_from_the_budget(tmp_path, table, check):
    from sweeps.stores.storage import make_pruner
    from sweeps.study.pruners import PRUNERS
    from sweeps.study.spec import load_spec

    spec, prof = load_spec(str(search_file(tmp_path, pruner=table, epochs=40))).for_profile("quick")
    pruner = make_pruner(spec.pruner, prof)
    assert type(pruner).__name__ == PRUNERS[spec.pruner.kind].optuna and check(pruner)


@pytest.mark.parametrize("table, message", [
    ('kind = "asha"', "pruner.kind must be one of median, percentile, successive_halving, hyperband, threshold, "
                      "patient, got 'asha'"),
    ('kind = "hyperband"\nreduction_factor = 1', "pruner.reduction_factor must be >= 2, got 1"),
    ('kind = "hyperband"\nmin_resource = "5"', "pruner.min_resource must be an integer, got '5'"),
    ('kind = "hyperband"\nmax_resource = "all"', "pruner.max_resource must be an integer or \"auto\", got 'all'"),
    ('kind = "hyperband"\nmin_resource = 3\nmax_resource = 2', "pruner.max_resource 2 is below its min_resource 3"),
    ('kind = "hyperband"\nmin_resource = 9', "it could first prune at epoch 9, after profiles.quick's 3 epochs"),
    ('kind = "hyperband"\nwarp = 3', "unknown key pruner.warp"),
    ('kind = "percentile"', "pruner.percentile is needed by the percentile pruner"),
    ('kind = "percentile"\npercentile = 120', "pruner.percentile must be from 0 to 100, got 120"),
    ('kind = "median"\nn_startup_trials = -1', "pruner.n_startup_trials must be >= 0, got -1"),
    ('kind = "median"\nn_warmup_steps = true', "pruner.n_warmup_steps must be an integer, got True"),
    ('kind = "threshold"', "pruner (threshold) needs lower, upper or both"),
    ('kind = "threshold"\nlower = 5\nupper = 1', "pruner.lower 5 is above its upper 1"),
    ('kind = "threshold"\nupper = nan', "pruner.upper must be a finite number, got nan"),
    ('kind = "patient"\npatience = 1\n[pruner.wrapped]\nkind = "patient"\npatience = 1',
     "pruner.wrapped.kind must be one of median, percentile, successive_halving, hyperband, threshold, got"),
    ('kind = "patient"\npatience = 1\n[pruner.wrapped]\nkind = "median"\nn_min_trials = 0',
     "pruner.wrapped.n_min_trials must be >= 1, got 0"),
])
def test_a_bad_pruner_value_is_one_line_exit_2_and_nothing_written(tmp_path, table, message):
    storage, tracking = stores(tmp_path)
    res = cli("run", search_file(tmp_path, pruner=table), "--device", "cpu", "--storage", storage,
              "--tracking-uri", tracking, "--out", tmp_path / "r", "--checkpoint-dir", tmp_path / "c")
    assert_one_line_error(res.stderr, res.exit_code, message)
    assert not [p for p in tmp_path.iterdir() if p.name != "srch.toml"]  # no store, no folder


def test_a_study_of_the_seed_s_claims_keeps_no_pruner_and_show_says_so(tmp_path):
    path = search_file(tmp_path, pruner='kind = "median"')
    path.write_text('claims = [4]\n' + path.read_text())
    res = cli("show", path)
    assert_one_line_error(res.stderr, res.exit_code, "a study of the seed's claims (here 4) keeps none")
    shown = cli("show", "lr-study")
    assert shown.exit_code == 0 and "pruner: none (a study of the seed's claims keeps none" in " ".join(shown.stdout.split())


def test_show_lr_search_names_its_sampler_and_its_pruner_per_profile():
    res = cli("show", "lr-search")
    text = " ".join(res.stdout.split())
    assert res.exit_code == 0, res.output
    assert "sampler: tpe (Optuna's TPESampler), seed 0" in text
    assert "pruner: hyperband (Optuna's HyperbandPruner)" in text
    assert "pruner min_resource 5, max_resource 36, reduction_factor 3" in text  # quick: auto = its 36 epochs
    assert "pruner min_resource 5, max_resource 120, reduction_factor 3" in text  # full


def test_a_budget_cut_below_the_pruner_s_first_rung_is_refused_before_anything_exists(tmp_path):
    storage, tracking = stores(tmp_path)
    res = cli("run", "lr-search", "--profile", "quick", "--epochs", "3", "--device", "cpu", "--storage", storage,
              "--tracking-uri", tracking, "--out", tmp_path / "r")
    assert_one_line_error(res.stderr, res.exit_code, "it could first prune at epoch 5, after --epochs 3")
    assert not list(tmp_path.iterdir())


def test_cmaes_needs_a_continuous_range(tmp_path):
    path = search_file(tmp_path, sampler="cmaes", space="lr_d = { values = [1e-4, 1e-3] }")
    res = cli("show", path)
    assert_one_line_error(res.stderr, res.exit_code, "sampler.kind cmaes needs a log_uniform or uniform range")


# -- samplers: each seeded from the study's seed, none asks a configuration twice ---------------------------

def _handles(tmp_path, sampler, trials, seeds=(0, 1), n=2):
    from sweeps.stores.storage import StudyHandle, make_pruner, make_sampler, open_storage
    from sweeps.study.spec import load_spec

    url = f"sqlite:///{tmp_path / 'o.db'}"
    spec, prof = load_spec(str(search_file(tmp_path, sampler=sampler, trials=trials, seeds=seeds))).for_profile("quick")
    optuna.create_study(storage=open_storage(url, heartbeat=False), study_name="s")
    out = []
    for _ in range(n):
        storage = open_storage(url, heartbeat=False)
        study = optuna.load_study(study_name="s", storage=storage, sampler=make_sampler(spec),
                                  pruner=make_pruner(spec.pruner, prof))
        out.append(StudyHandle(study, storage, spec, prof, "s", url))
    return out


def _work(handle, asked: list) -> None:
    """Take work as a worker does (an enqueued trial first, else a new one) and finish each at once with a
    value of its parameters, so that the model-based samplers have completed trials to learn from."""
    from sweeps.stores.storage import ask_sampled, pop_waiting

    while (t := pop_waiting(handle) or ask_sampled(handle)) is not None:
        params = {p.name: p.suggest(t) for p in handle.spec.space}
        handle.study.tell(t, (math.log10(params["lr_d"]) + 3) ** 2 + (math.log10(params["lr_g"]) + 4) ** 2)
        asked.append(t.number)


@pytest.mark.parametrize("sampler", ["tpe", "random", "gp", "cmaes", "qmc"])
def test_two_processes_asking_at_once_sample_the_design_once_without_a_duplicate(tmp_path, sampler):
    """Two handles on one study (as two processes hold them) take work behind one barrier; 12 configurations
    (GP starts modelling after 10, CMA-ES after 1) x 2 seeds."""
    from sweeps.stores.storage import trial_key

    handles = _handles(tmp_path, sampler, trials=12)
    asked: list[list] = [[], []]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(i):
        barrier.wait()
        try:
            _work(handles[i], asked[i])
        except BaseException as exc:  # e.g. both took one trial: the second tell finds it finished
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'o.db'}").trials
    sampled = [t for t in trials if t.user_attrs.get("sampled")]
    assert len(sampled) == 12 and all(asked), [len(a) for a in asked]
    configs = {(t.params["lr_d"], t.params["lr_g"]) for t in sampled}
    assert len(configs) == 12, "a configuration was asked twice"
    keys = [trial_key(t) for t in trials]
    assert len(trials) == 24 and len(set(keys)) == 24 and all(t.state == TrialState.COMPLETE for t in trials)


@pytest.mark.parametrize("sampler", ["gp", "cmaes", "qmc"])
def test_one_process_samples_the_same_sequence_every_time(tmp_path, sampler):
    drawn = []
    for run in range(2):
        folder = tmp_path / str(run)
        folder.mkdir()
        handle, = _handles(folder, sampler, trials=11, seeds=(0,), n=1)
        _work(handle, [])
        drawn.append([(t.params["lr_d"], t.params["lr_g"]) for t in handle.study.get_trials()])
    assert drawn[0] == drawn[1] and len(set(drawn[0])) == 11


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["gp", "cmaes", "qmc"])
def test_each_new_sampler_runs_a_study_and_two_concurrent_runs_never_duplicate(tmp_path, evaluator, sampler):
    import os
    import subprocess

    import forked

    spec = search_file(tmp_path, sampler=sampler, pruner=None, trials=3, seeds=(0, 1), epochs=1, steps=2)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    storage, tracking = stores(tmp_path)
    args = ["run", str(spec), "--device", "cpu", "--engine", "reference", "--storage", storage, "--tracking-uri",
            tracking, "--out", str(tmp_path / "reports"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    procs = [forked.spawn("-m", "sweeps", *args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    trials = optuna.load_study(study_name="srch-quick", storage=storage).trials
    keys = [(t.params["lr_d"], t.params["lr_g"], t.user_attrs["seed"]) for t in trials]
    assert len(trials) == 6 and len(set(keys)) == 6 and all(t.state in DONE for t in trials), keys


# -- the loop: a stopper decides once per epoch, after every member reported ----------------------------------

class Recorder:
    """A gan_core.loop.Stopper that stops given members at given epochs and records what it was told."""

    def __init__(self, stop: dict[int, int], log: list) -> None:
        self.stop, self.log, self.ended_results = stop, log, {}

    def restored(self, p, history):
        self.log.append(("restored", p, len(history)))

    def decide(self, epoch, members):
        self.log.append(("decide", epoch, tuple(members)))
        return [p for p in members if self.stop.get(p) == epoch]

    def ended(self, p, result):
        self.log.append(("ended", p, len(result.history)))
        self.ended_results[p] = result


def test_the_stopper_is_asked_once_an_epoch_after_every_member_and_a_stopped_member_leaves(mnist, monkeypatch):
    from gan_core.config import RunConfig
    from gan_core.population import PopulationTrainer

    base = RunConfig().replace(**(SMALL | dict(dtype="float32", epochs=3, steps_per_epoch=3, eval_samples=64)))
    cfgs = [base.replace(seed=s) for s in range(3)]
    log: list = []
    sizes = []
    real = PopulationTrainer.subset
    monkeypatch.setattr(PopulationTrainer, "subset", lambda self, keep: (sizes.append(len(keep)), real(self, keep))[1])
    pop = PopulationTrainer(cfgs, mnist, callbacks=[lambda p, ev: log.append(("cb", ev.record.epoch, p))])
    stopper = Recorder({1: 1}, log)
    results = pop.run(stopper=stopper)
    assert log[:5] == [("cb", 1, 0), ("cb", 1, 1), ("cb", 1, 2), ("decide", 1, (0, 1, 2)), ("ended", 1, 1)]
    assert ("decide", 2, (0, 2)) in log and sizes == [2]  # member 1 left at epoch 1's end: two train on
    assert [len(r.history) for r in results] == [3, 1, 3] and results[1].stopped_early
    assert results[1] is stopper.ended_results[1]  # the result handed at once is the one run returns


@pytest.mark.slow
def test_a_pruned_member_leaves_and_the_others_still_equal_their_single_runs_float64(mnist):
    """In float64 on the CPU: members 0 and 2 equal their reference runs to 1e-10 after member 1 was stopped at
    epoch 1, and member 1 equals its reference run stopped there too."""
    from gan_core.config import RunConfig
    from gan_core.population import PopulationTrainer
    from gan_core.trainer import Trainer

    base = RunConfig().replace(**(SMALL | dict(epochs=3, steps_per_epoch=6)))
    cfgs = [base.replace(seed=0), base.replace(seed=1, lr_d=1e-3), base.replace(seed=2, clamp="logits")]
    pop = PopulationTrainer(cfgs, mnist)
    results = pop.run(stopper=Recorder({1: 1}, []))
    for p, cfg in enumerate(cfgs):
        ref = Trainer(cfg, mnist)
        r = ref.run(stopper=Recorder({0: 1} if p == 1 else {}, []))
        assert len(r.history) == len(results[p].history) == (1 if p == 1 else 3)
        for a, b in zip(results[p].history, r.history):
            for key in ("loss_d", "loss_g", "d_real", "d_fake", "grad_d", "grad_g"):
                assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-10, abs=1e-10, nan_ok=True), (p, key)
        for mine, theirs in zip(g_params(pop, p), ref_g_params(ref)):
            assert (mine - theirs).abs().max().item() < 1e-10, p


class FakeTrial:
    """What TrialPruning uses of an optuna.Trial, recording the order it is asked in."""

    def __init__(self, number: int, answer: bool, asked: list, user_attrs: dict | None = None) -> None:
        self.number, self.answer, self.asked, self.user_attrs, self.written = number, answer, asked, user_attrs or {}, {}

    def should_prune(self) -> bool:
        self.asked.append(self.number)
        return self.answer

    def set_user_attr(self, key, value) -> None:
        self.written[key] = value


def test_the_pruner_decides_in_trial_order_writes_each_decision_at_once_and_a_retry_replays_its_own():
    import contextlib

    from sweeps.running.pruning import TrialPruning

    asked: list = []
    trials = [FakeTrial(7, True, asked), FakeTrial(3, False, asked), FakeTrial(5, True, asked, {"pruned_epoch": 2})]
    pruning = TrialPruning(trials, "fld", lambda p, result, epoch: None, contextlib.nullcontext)
    pruning.reported = [{1, 2}, {1, 2}, {1, 2}]  # every member reported epochs 1 and 2
    assert pruning.decide(1, [0, 1, 2]) == [0] and asked == [3, 7]  # trial order, whatever the members' order
    assert trials[0].written == {"pruned_epoch": 1}  # on the trial before any later decision
    # trial 5 retries a trial pruned at epoch 2 whose process died before recording it: it is not asked (its
    # rung is already recorded as passed) and stops at that epoch
    assert pruning.decide(2, [1, 2]) == [2] and asked == [3, 7, 3] and trials[2].written == {"pruned_epoch": 2}
    assert pruning.pruned == {0: 1, 2: 2}


# -- pruning in a study: deterministic, apart from the judge's labels ----------------------------------------

F64 = 'dtype = "float64"\nz_dim = 16\ng_hidden = "32,64"\nd_hidden = 32'


def _decisions(storage: str, name: str = "srch-quick") -> dict[int, tuple]:
    study = optuna.load_study(study_name=name, storage=storage)
    return {t.number: (t.state.name, t.user_attrs.get("ended_by"), t.user_attrs.get("pruned_epoch"),
                       t.params["lr_d"]) for t in study.trials}


@pytest.mark.slow
def test_pruning_decisions_are_identical_run_to_run_and_whatever_the_order_or_engine(tmp_path, evaluator, capsys,
                                                                                    monkeypatch):
    """The same pruned study (successive halving, float64) three ways: a population, the same population with its
    members in reverse order (their callbacks report last trial first), and the reference engine one trial
    after another. Each prunes the same trials at the same epochs."""
    import sweeps.running.runner as runner

    spec = search_file(tmp_path, trials=6, epochs=4, steps=4, fixed=F64)
    seen = {}
    for how in ("population", "reversed", "reference"):
        folder = tmp_path / how
        folder.mkdir()
        storage, tracking = stores(folder)
        if how == "reversed":
            real = runner.split_into_populations
            monkeypatch.setattr(runner, "split_into_populations",
                                lambda cfgs, n: [list(reversed(g)) for g in real(cfgs, n)])
        finish_here(capsys, "run", spec, "--device", "cpu", "--storage", storage, "--tracking-uri", tracking,
                    "--engine", "reference" if how == "reference" else "population", "--out", folder / "r",
                    "--checkpoint-dir", folder / "c")
        monkeypatch.undo()
        seen[how] = _decisions(storage)
    assert seen["population"] == seen["reversed"] == seen["reference"], seen
    ends = [v[1] for v in seen["population"].values()]
    assert "pruner" in ends and ends.count("pruner") < len(ends), seen  # it pruned some, not all


@pytest.mark.slow
def test_pruned_runs_are_told_apart_from_sealed_ones_in_optuna_mlflow_the_csv_and_the_report(tmp_path, evaluator,
                                                                                            capsys):
    """A grid whose last lr (1.0, no clamp, no clipping) diverges at once: the judge seals it (PRUNED, with its
    outcome) while the pruner stops some of the others (PRUNED, no outcome)."""
    storage, tracking = stores(tmp_path)
    spec = search_file(tmp_path, sampler="grid", epochs=3, steps=4,
                       space='lr_d = { values = [2e-3, 1e-3, 1e-4, 3e-4, 1.0], tie = ["lr_g"] }',
                       fixed='z_dim = 16\ng_hidden = "32,64"\nd_hidden = 32\nclamp = "none"\nclip_d = "off"\n'
                             'clip_g = "off"')
    out = finish_here(capsys, "run", spec, "--device", "auto", "--storage", storage, "--tracking-uri", tracking,
                      "--engine", "population", "--out", tmp_path / "r", "--checkpoint-dir", tmp_path / "c")
    study = optuna.load_study(study_name="srch-quick", storage=storage)
    client = MlflowClient(tracking)
    pruned = [t for t in study.trials if t.user_attrs.get("ended_by") == "pruner"]
    judged = [t for t in study.trials if t.user_attrs.get("ended_by") in ("budget", "judge")]
    sealed = [t for t in judged if t.user_attrs["ended_by"] == "judge"]
    assert pruned and sealed and len(pruned) + len(judged) == 5
    assert [t.user_attrs["outcome"] for t in sealed if t.params["lr_d"] == 1.0] == ["diverged"]
    for t in pruned:
        assert t.state == TrialState.PRUNED and "outcome" not in t.user_attrs and "sealed" not in t.user_attrs
        assert t.user_attrs["epochs_trained"] == t.user_attrs["pruned_epoch"] < 3
        assert max(t.intermediate_values) == t.user_attrs["pruned_epoch"]
        tags = client.get_run(t.user_attrs["mlflow_run_id"]).data.tags
        assert tags["ended_by"] == "pruner" and tags["pruned_epoch"] == str(t.user_attrs["pruned_epoch"])
        assert "outcome" not in tags
    for t in judged:  # sealed runs keep PRUNED with their outcome; the others COMPLETE
        assert (t.state == TrialState.PRUNED) == (t.user_attrs["ended_by"] == "judge") == t.user_attrs["sealed"]
        assert client.get_run(t.user_attrs["mlflow_run_id"]).data.tags["ended_by"] == t.user_attrs["ended_by"]
    assert f"({len(pruned)} by the study's pruner, " in " ".join(out.split())
    import pandas as pd

    csv = pd.read_csv(tmp_path / "r" / "srch-quick" / "trials.csv").set_index("trial")
    from gan_core.device import resolve_device

    assert set(csv["device_used"]) == {str(resolve_device("auto"))}  # what each run resolved "auto" to
    assert (csv["steps"] == 4 * csv["epochs_trained"]).all() and set(csv["train_images"]) == {8000}  # 2,000 held out
    for t in pruned:
        assert csv.loc[t.number, ["outcome", "ended_by", "pruned_epoch"]].tolist() == [
            "pruned", "pruner", t.user_attrs["pruned_epoch"]]
    md = (tmp_path / "r" / "srch-quick" / "report.md").read_text()
    assert "## Stopped by the study's pruner (no outcome of the judge)" in md and "pruned_at_epoch" in md


def _with_pruned(study, arm: str, n: int, epoch: int = 2):
    """Add `n` runs of `arm` that the study's pruner stopped at `epoch` (PRUNED, no outcome)."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import create_trial

    start = len(study.trials)
    for i in range(n):
        study.add_trial(create_trial(
            params={"clamp": arm}, distributions={"clamp": CategoricalDistribution(["none", "clamp", "logits"])},
            state=TrialState.PRUNED, intermediate_values={1: 800.0, 2: 700.0 + i},
            user_attrs={"seed": 10 + i, "ended_by": "pruner", "pruned_epoch": epoch, "epochs_trained": epoch,
                        "final_fld": 700.0 + i, "best_fld": 700.0 + i, "mlflow_run_id": f"run{start + i}",
                        "config": {"clamp": arm, "seed": 10 + i}}))


def test_the_report_shows_pruned_runs_apart_and_no_table_or_verdict_counts_them(study, tmp_path):
    from sweeps.report.data import load_study_data
    from sweeps.report.page import build, write
    from sweeps.report.tables import outcome_table
    from sweeps.stores.storage import counts

    before = load_study_data(study)
    verdict = build(before, None).verdicts[0]
    _with_pruned(study, "none", 3)
    data = load_study_data(study)
    assert (data.trials["outcome"] == "pruned").sum() == 3 and len(data.finished) == len(before.finished)
    sealed = data.trials[data.trials["state"] == "PRUNED"]  # the judge's sealed runs: inferred for old trials
    assert set(sealed["ended_by"]) == {"judge", "pruner"}
    assert set(sealed.loc[sealed["ended_by"] == "judge", "outcome"]) == {"diverged", "stalled"}
    assert outcome_table(data, "clamp").equals(outcome_table(before, "clamp"))  # 'none' still 4 of 5 diverged
    rep = build(data, None)
    assert rep.verdicts[0].status == verdict.status
    assert "3 run(s) stopped by the study's pruner: no outcome, counted apart." in rep.verdicts[0].sentence
    assert rep.pruned["pruned_at_epoch"].tolist() == [2, 2, 2] and rep.pruned["clamp"].tolist() == ["none"] * 3
    files = write(rep, tmp_path / "rep")
    md = files["md"].read_text()
    assert "## Stopped by the study's pruner (no outcome of the judge)" in md and "pruned 3" in md
    c = counts(study)  # the fixture's 6 sealed runs and the 3 pruned: one state, two causes
    assert c["PRUNED"] == 6 + 3 and c["PRUNED_BY_PRUNER"] == 3 and "?" not in c


# -- the comparison harness ----------------------------------------------------------------------------------

def test_compare_counts_member_epochs_and_snaps_the_search_s_best_to_the_grid(tmp_path):
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from sweeps.report.compare import compare
    from sweeps.report.data import load_study_data

    def make(name, runs, device_used=None):
        s = optuna.create_study(study_name=name)
        s.set_user_attr("spec", {"metric": "fld", "fixed": {}, "sampler": name, "epochs": 10})
        for lr, fld, epochs, by in runs:
            state = TrialState.COMPLETE if by == "budget" else TrialState.PRUNED
            s.add_trial(create_trial(params={"lr_d": lr}, distributions={"lr_d": FloatDistribution(1e-6, 1e-2, log=True)},
                                     state=state, value=fld if state == TrialState.COMPLETE else None,
                                     user_attrs={"seed": 0, "final_fld": fld, "epochs_trained": epochs, "ended_by": by,
                                                 "outcome": None if by == "pruner" else "poor_quality",
                                                 "config": {"device": "auto"}}
                                     | ({"device_used": device_used} if device_used else {})))
        return load_study_data(s)

    grid = make("grid", [(1e-5, 900.0, 10, "budget"), (1e-4, 300.0, 10, "budget"), (1e-3, 500.0, 10, "budget"),
                         (1e-3, 700.0, 10, "budget")], device_used="cpu")
    search = make("search", [(2.5e-4, 290.0, 10, "budget"), (5e-6, 100.0, 1, "pruner"), (2e-3, 80.0, 4, "judge")])
    c = compare(grid, search)
    assert (c.grid.member_epochs, c.search.member_epochs) == (40, 15) and c.share == pytest.approx(0.375)
    assert c.grid.best == {"lr_d": 1e-4} and c.search.best == {"lr_d": 2.5e-4}  # only runs to their end rank
    assert c.region == {"lr_d": 1e-4} and c.agrees and c.grid_at_region == 300.0
    assert (c.search.pruned, c.search.sealed) == (1, 1)
    assert (c.grid.devices, c.search.devices) == ("cpu", "auto")  # what ran; a store from before device_used: what was asked


# -- resume: kill -9 of a pruned study ---------------------------------------------------------------------

@pytest.mark.slow
def test_a_pruned_study_killed_mid_epoch_resumes_with_its_pruned_trials_pruned_and_none_lost_or_run_twice(
        tmp_path, evaluator, capsys, monkeypatch):
    lrs = "1e-4, 2e-4, 5e-4, 1e-3, 2e-3"
    spec = search_file(tmp_path, sampler="grid", space=f"lr_d = {{ values = [{lrs}] }}", epochs=10, steps=40,
                       fixed='z_dim = 16\ng_hidden = "32,64"\nd_hidden = 32\nstop_early = false')
    storage, tracking = stores(tmp_path)
    ckpt = tmp_path / "ckpt"
    args = ["--storage", storage, "--tracking-uri", tracking, "--device", "cpu", "--engine", "population",
            "--heartbeat", 1, "--checkpoint-dir", ckpt]
    victim = gan_sweep("run", spec, *args, "--out", tmp_path / "r", cwd=tmp_path)
    deadline = time.time() + 300
    pruned_before: dict = {}
    while True:  # a trial pruned, every other one mid-way with its checkpoint: the population trains on
        assert victim.poll() is None and time.time() < deadline, "no prune and checkpoints while it ran"
        study = watch_study(storage, "srch-quick")
        if study is not None:
            trials = study.trials
            pruned_before = {t.number: (t.params["lr_d"], t.user_attrs["pruned_epoch"]) for t in trials
                             if t.user_attrs.get("ended_by") == "pruner"}
            live = [t for t in trials if t.state == TrialState.RUNNING]
            if pruned_before and live and len(list(ckpt.glob("*.pt"))) == len(live):
                break
        time.sleep(0.1)
    victim.kill()  # SIGKILL mid-epoch: the survivors are left RUNNING
    victim.wait()
    running = [t.number for t in optuna.load_study(study_name="srch-quick", storage=storage).trials
               if t.state == TrialState.RUNNING]
    assert running, "the population ended before the kill"
    time.sleep(3.5)  # three missed heartbeats
    monkeypatch.chdir(tmp_path)
    finish_here(capsys, "worker", spec, *args)
    study = optuna.load_study(study_name="srch-quick", storage=storage)
    done = [t for t in study.trials if t.state in DONE]
    keys = [(t.params["lr_d"], t.user_attrs["seed"]) for t in done]
    assert len(keys) == len(set(keys)) == 5, [(t.number, t.state.name, t.params) for t in study.trials]  # none lost or twice
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for number, (lr, epoch) in pruned_before.items():  # still pruned, at the same epoch, and not run again
        t = study.trials[number]
        assert t.state == TrialState.PRUNED and t.user_attrs["ended_by"] == "pruner"
        assert t.user_attrs["pruned_epoch"] == epoch and [k[0] for k in keys].count(lr) == 1
    for number in running:  # each killed trial: failed as stale, retried once from its checkpoint
        assert study.trials[number].state == TrialState.FAIL
        retry = next(t for t in done if t.system_attrs.get("failed_trial") == number)
        assert retry.user_attrs["resumed_from_epoch"] >= 2  # from its checkpoint, not from scratch
        # the retry's pruner saw the epochs its checkpoint restored: its curve has no hole
        steps = sorted(retry.intermediate_values)
        assert steps == list(range(1, steps[-1] + 1)), steps
