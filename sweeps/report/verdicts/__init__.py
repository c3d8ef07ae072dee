"""Verdicts: the arms and decisions every judge uses (`arms`), the judges of the pitfall claims
(`pitfalls`) and of the cures (`cures`), and here the one registry of judges, all with one signature
(study data, its finished trials, the claim's id)."""

from __future__ import annotations

import dataclasses

from gan_core.judge.thresholds import Thresholds
from sweeps.report.data import StudyData
from sweeps.report.verdicts import cures, pitfalls
from sweeps.report.verdicts.arms import MIN_RUNS, STATUSES, Arm, ClaimVerdict
from sweeps.report.verdicts.evidence import BAR_DEPENDS, BAR_HOLDS, relabelled
from sweeps.study.claims import BY_ID, CLAIMS

__all__ = ["JUDGES", "MIN_RUNS", "STATUSES", "Arm", "ClaimVerdict", "claim_verdict", "study_claims", "verdicts"]

JUDGES = {**pitfalls.JUDGES, **cures.JUDGES}
"""Every claim's judge, by claim id."""


def study_claims(data: StudyData) -> tuple[str, ...]:
    """The claims a study tests: its file's `claims`; for studies stored before claims had ids, the
    old `pitfall` number, or the claims whose built-in study it is."""
    spec = data.spec
    if spec.get("claims"):
        return tuple(str(c) for c in spec["claims"] if str(c) in BY_ID)
    if spec.get("pitfall") in range(1, 6):
        return (str(spec["pitfall"]),) + (("adaptive",) if spec["pitfall"] == 3 else ())
    source = str(spec.get("source", "")).removesuffix(" (built-in)")
    return tuple(c.id for c in CLAIMS if c.study == source)


def verdicts(data: StudyData) -> list[ClaimVerdict]:
    """A verdict on each claim the study tests."""
    return [claim_verdict(data, c) for c in study_claims(data)]


def claim_verdict(data: StudyData, claim_id: str) -> ClaimVerdict:
    """The verdict on one claim from one study's trials, and whether it holds when the success bar moves
    by its band either way (the runs not sealed during training labelled again from their final quality)."""
    df = data.decided  # runs over a stated budget are neither success nor failure: counted apart
    apart = len(data.finished) - len(df)
    claim = BY_ID[claim_id].text
    if df.empty:
        return ClaimVerdict(claim_id, claim, "not tested", "No finished runs yet" + (
            f" ({apart} over budget, counted apart)." if apart else "."))
    found = JUDGES[claim_id](data, df, claim_id)
    if apart:
        found = dataclasses.replace(found, sentence=f"{found.sentence} {apart} run(s) ran past the uncapped inner "
                                                   f"loop's stated bound: over budget, neither success nor failure, "
                                                   f"counted apart.")
    if not data.pruned.empty:  # stopped for being behind, not judged: neither success nor failure
        found = dataclasses.replace(found, sentence=f"{found.sentence} {len(data.pruned)} run(s) stopped by the "
                                                   f"study's pruner: no outcome, counted apart.")
    th = Thresholds.from_stored(data.thresholds)
    if th is None or found.status == "not tested":
        return found
    stricter, looser = (JUDGES[claim_id](dataclasses.replace(data, thresholds=dataclasses.asdict(th.moved(s))),
                                         relabelled(df, th.moved(s)), claim_id).status for s in (True, False))
    if stricter == looser == found.status:
        return dataclasses.replace(found, bar=BAR_HOLDS, sentence=f"{found.sentence} This {BAR_HOLDS} (the success "
                                                                  f"bar moved by its band either way).")
    return dataclasses.replace(found, bar=BAR_DEPENDS, sentence=f"{found.sentence} This {BAR_DEPENDS}: {stricter} "
                                                                 f"with a stricter success bar, {looser} with a looser one.")
