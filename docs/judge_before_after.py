"""The judge before the panel of real runs (issue 33) and today's, on the same measurements: docs/figures.md's
"The judge, before and after".

    python docs/judge_before_after.py panel                       # the panel of real runs, per half
    python docs/judge_before_after.py trials REPORT/trials.csv [KEY,KEY]   # a report's runs, relabelled

"Before" is the rule and thresholds of commit f11007f^ (gan_core/outcome.py and gan_core/records.py, read
from this clone's git history), its success bar the FLD of the same constructed set it named (real digits
under pixel noise 0.3) on today's shipped evaluator; "after" is gan_core.judge today. Both read the same
Quality of each sample set, so only the rule differs. Needs a git clone (not an sdist) and the venv.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path

BEFORE = "f11007f^"
"""The commit whose judge issue 33 was filed against."""
ROOT = Path(__file__).resolve().parent.parent


def _old_judge() -> types.ModuleType:
    """The old outcome module, built from git history (its schedule import stubbed: label_quality needs
    none of it)."""
    pkg = types.ModuleType("judge_before")
    pkg.__path__ = []
    sys.modules["judge_before"] = pkg
    stub = types.ModuleType("judge_before.schedule")
    stub.HUNG_BOUND = stub.HUNG_ZERO = stub.ZERO_GRADIENT_STEPS = None
    sys.modules["judge_before.schedule"] = stub
    for name in ("records", "outcome"):
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE}:gan_core/{name}.py"],
                                check=True, capture_output=True, text=True).stdout
        mod = types.ModuleType(f"judge_before.{name}")
        mod.__package__ = "judge_before"
        sys.modules[mod.__name__] = mod
        exec(compile(source, f"{BEFORE}:gan_core/{name}.py", "exec"), mod.__dict__)  # noqa: S102 - our own history
    return sys.modules["judge_before.outcome"]


def judges(ev):
    """(before, after) on evaluator ev's scale: each a function Quality-as-dict -> label."""
    from gan_core.judge.outcome import label_quality
    from gan_core.judge.thresholds import SUCCESS_SET
    from gan_core.records import Quality

    old = _old_judge()
    old_th = old.Thresholds(success_fld=ev.calibration[SUCCESS_SET]["fld"])
    new_th = ev.thresholds()
    names = [f.name for f in dataclasses.fields(old.Quality)]
    return (lambda q: old.label_quality(old.Quality(**{n: q[n] for n in names}), old_th)[0],
            lambda q: label_quality(Quality(**q), new_th)[0])


def evaluator():
    from gan_core.data import load_dataset
    from gan_core.judge.evaluator import Evaluator

    return Evaluator(load_dataset("mnist-10k"))


def panel() -> None:
    from gan_core.judge import panel as P

    ev = evaluator()
    before, after = judges(ev)
    sets = P.load()
    q = {s.id: ev.quality(x).as_dict() for s, x in P.iter_samples(sets)}
    print("| half | judge | success or not | the failure's kind | called success (eye: working GANs) |")
    print("| --- | --- | --- | --- | --- |")
    for half in P.HALVES:
        eye = sum(s.success is True for s in sets if s.half == half)
        for name, judge in (("before", before), ("after", after)):
            judged = {k: judge(v) for k, v in q.items()}
            a = P.agreement(sets, judged, half)
            called = sum(judged[s.id] == "success" for s in sets if s.half == half)
            print(f"| {half} | {name} | {a.success_agree} of {a.sets} ({a.success_share:.0%}) | {a.kind_agree} of "
                  f"{a.kind_sets} ({a.kind_share:.0%}) | {called} ({eye}) |")


def trials(csv_path: str, keys: str = "") -> None:
    import csv

    before, after = judges(evaluator())
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    names = [c.removeprefix("final_") for c in rows[0] if c.startswith("final_")] if rows else []
    arms: Counter = Counter()
    for r in rows:
        arm = "/".join(f"{k}={r[k]}" for k in keys.split(",") if k) or "all"
        if r["state"] == "PRUNED" and r["ended_by"] == "pruner":
            continue
        if not r.get("final_fld") or r["outcome"] not in ("success", "mode_collapse", "poor_quality", "untrained"):
            arms[(arm, r["outcome"], r["outcome"])] += 1  # sealed in training: the same under both
            continue
        q = {n: float(r["final_" + n]) for n in names}
        # Recomputed, not read: `outcome` holds the label with its hysteresis over the run's evaluations.
        arms[(arm, before(q), after(q))] += 1
    print("| arm | before | after | runs |\n| --- | --- | --- | --- |")
    for (arm, b, a), n in sorted(arms.items()):
        print(f"| {arm} | {b} | {a} | {n} |")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    {"panel": panel, "trials": trials}[sys.argv[1]](*sys.argv[2:])
