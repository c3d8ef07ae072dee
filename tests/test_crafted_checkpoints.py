"""A checkpoint is a file in a folder other workers share: whatever is in it, it runs no code, takes no
more memory than a real one could, and resumes only if every field fits the member (shape, dtype, count,
finiteness, the schedule's state in range). Both engines refuse the same files with the same words."""

import io
import re
import zipfile

import pytest
import torch

from gan_core.config import RunConfig
from gan_core.population import PopulationTrainer
from gan_core.trainer import Trainer

TINY = dict(dataset="mnist-10k", device="cpu", z_dim=8, g_hidden="16,16", d_hidden=16, epochs=3,
            steps_per_epoch=4, eval_samples=50, stop_early=False)


@pytest.fixture(scope="module")
def saved(mnist, tmp_path_factory):
    """A real checkpoint of the seed's reading after 2 of 3 epochs (Adam slots, pending grads, rest_K): the
    last one written (none is written after the final epoch)."""
    cfg = RunConfig().replace(**TINY)
    path = tmp_path_factory.mktemp("ckpt") / "good.pt"
    Trainer(cfg, mnist).run(checkpoint=path, checkpoint_every=1)
    return cfg, torch.load(path, weights_only=True)


def _nan_first(t):
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


def _craft(blob, what):
    blob = {**blob, "config": blob["config"], "state": {k: v for k, v in blob["state"].items()}}
    state = blob["state"]
    opt_g = {k: list(v) for k, v in state["opt_G"].items()}
    if what == "wrong_shape":        # broadcastable: a population once copied it into place silently
        opt_g["exp_avg"][0] = torch.zeros(1, opt_g["exp_avg"][0].shape[1], dtype=opt_g["exp_avg"][0].dtype)
    elif what == "missing_slot":     # zip() stopped at the shorter list, leaving the last slot at zero
        opt_g["exp_avg_sq"] = opt_g["exp_avg_sq"][:-1]
    elif what == "nan_weight":
        state["G"] = [_nan_first(state["G"][0])] + list(state["G"][1:])
    elif what == "nan_step":
        opt_g["step"] = [float("nan")] + opt_g["step"][1:]
    elif what == "negative_moment":
        opt_g["exp_avg_sq"][1] = -opt_g["exp_avg_sq"][1].abs() - 1
    elif what == "rest_k_negative":
        state["rule"] = {**state["rule"], "rest_k": -4}
    elif what == "rest_k_absurd":
        state["rule"] = {**state["rule"], "rest_k": 1e30}
    elif what == "wrong_dtype":
        state["D"] = [state["D"][0].double()] + list(state["D"][1:])
    state["opt_G"] = opt_g
    return blob


CASES = {"wrong_shape": "opt_G.exp_avg[0] has shape", "missing_slot": "opt_G.exp_avg_sq holds 5 entries",
         "nan_weight": "G[0] holds a NaN", "nan_step": "opt_G.step[0] is nan",
         "negative_moment": "negative second moment", "rest_k_negative": "rule.rest_k is -4",
         "rest_k_absurd": "rule.rest_k is 1e+30", "wrong_dtype": "D[0] is torch.float64"}


def _engines(cfg, mnist, messages):
    return {"reference": Trainer(cfg, mnist, log=messages.append),
            "population": PopulationTrainer([cfg], mnist, log=messages.append)}


def _resume(engine, path):
    result = engine.run(checkpoint=path) if isinstance(engine, Trainer) else engine.run([path])[0]
    return result


@pytest.mark.parametrize("what", sorted(CASES))
def test_a_crafted_field_is_refused_identically_by_both_engines(saved, mnist, tmp_path, what):
    cfg, blob = saved
    said = {}
    for name in ("reference", "population"):
        path = tmp_path / f"{name}.pt"
        torch.save(_craft(blob, what), path)
        messages = []
        engine = _engines(cfg, mnist, messages)[name]
        result = _resume(engine, path)
        assert result.resumed_from == 0 and len(result.history) == cfg.budget.epochs
        assert list(tmp_path.glob(f"{name}.pt.bad-*")), "moved aside"
        assert len(messages) == 1 and "\n" not in messages[0] and CASES[what] in messages[0], messages
        said[name] = re.sub(r"\.bad-\d{8}-\d{6}", ".bad-<time>", messages[0].replace(f"{name}.pt", "X"))
    assert said["reference"] == said["population"]


def test_the_untouched_checkpoint_resumes_on_both_engines(saved, mnist, tmp_path):
    """The check refuses only what is wrong: the same blob, uncrafted, resumes on either engine."""
    cfg, blob = saved
    for name in ("reference", "population"):
        path = tmp_path / f"{name}.pt"
        torch.save(blob, path)
        messages = []
        result = _resume(_engines(cfg, mnist, messages)[name], path)
        assert result.resumed_from == 2 and not messages, messages


def _rezip(blob, path, extra=None, pickled=None):
    """`blob` saved by torch, rewritten as a zip with `extra` records (deflated) or another data.pkl."""
    buf = io.BytesIO()
    torch.save(blob, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = pickled if pickled is not None and info.filename.endswith("data.pkl") else src.read(info.filename)
            out.writestr(info.filename, data, compress_type=zipfile.ZIP_STORED)
        for name, data in (extra or {}).items():
            out.writestr(name, data)


def test_a_record_declaring_far_more_than_the_member_holds_is_refused_before_torch_unpacks_it(saved, mnist,
                                                                                            tmp_path):
    """A compressed record of zeros declares 64 MB unpacked in 64 kB of file (as one declaring gigabytes
    would: torch allocates what a record declares before reading it)."""
    cfg, blob = saved
    path = tmp_path / "bomb.pt"
    _rezip(blob, path, extra={"archive/data/999": bytes(64 << 20)})
    assert path.stat().st_size < 1 << 20
    messages = []
    result = Trainer(cfg, mnist, log=messages.append).run(checkpoint=path)
    assert result.resumed_from == 0
    assert len(messages) == 1 and "declare" in messages[0] and "unpacked" in messages[0], messages


def test_a_file_larger_than_any_checkpoint_of_the_member_is_not_read(saved, mnist, tmp_path):
    cfg, _ = saved
    path = tmp_path / "huge.pt"
    with open(path, "wb") as f:
        f.truncate(200 << 20)  # sparse: 200 MB that take no disk
    messages = []
    result = PopulationTrainer([cfg], mnist, log=messages.append).run([path])[0]
    assert result.resumed_from == 0 and "more than the" in messages[0]


def test_torch_s_pickle_warning_is_part_of_the_one_line(saved, mnist, tmp_path, recwarn):
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    cfg, blob = saved
    path = tmp_path / "evil.pt"
    _rezip(blob, path, pickled=pickle.dumps(Payload(), protocol=4))  # torch warns of the protocol, then refuses
    messages = []
    Trainer(cfg, mnist, log=messages.append).run(checkpoint=path)
    assert len(messages) == 1 and "torch refused it" in messages[0] and "torch warned" in messages[0], messages
    assert "weights_only" not in messages[0]  # torch's advice to load unsafely is not passed on
    assert not [w for w in recwarn.list if "pickle protocol" in str(w.message)], "a warning printed beside the line"


@pytest.mark.parametrize("history", ["gap", "too_long"])
def test_a_history_out_of_order_or_longer_than_the_budget_is_refused(saved, mnist, tmp_path, history):
    cfg, blob = saved
    records = list(blob["history"])
    records = [records[0], {**records[1], "epoch": 3}] if history == "gap" else records * 3
    path = tmp_path / "h.pt"
    torch.save({**blob, "history": records}, path)
    messages = []
    result = Trainer(cfg, mnist, log=messages.append).run(checkpoint=path)
    assert result.resumed_from == 0 and "its history holds epochs" in messages[0], messages


def test_rest_k_from_a_huge_finite_loss_stays_within_what_a_checkpoint_accepts():
    """int(1 + |l| * 6) for a finite loss of 1e30 would pass 2**62 and make the run's own checkpoint
    unusable: both engines cap it (the population in float64, the reference here)."""
    from gan_core.config import ScheduleConfig
    from gan_core.schedule import REST_K_MAX, AdaptiveRule

    rule = AdaptiveRule(ScheduleConfig(g_loop_cap=None))
    rule.run(lambda: 0.0, lambda: 1e30)
    assert rule.rest_k == REST_K_MAX
