"""`gan-sweep atlas`: one page that answers every claim of the seed from the studies in storage.

One row per claim (sweeps/study/claims.py): its verdict, the sentence with the numbers and intervals, the
runs it rests on, a thumbnail of the typical final samples of each arm, and a link to the study's
own report (written beside the atlas). Then the findings no claim covers (a dead D under the clamp,
crashes), read from the same trials. Written as `<out>/atlas/atlas.html` (self-contained: every
image embedded), `atlas.md` (thumbnails in `thumbs/`) and `atlas.csv`.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gan_core import readings
from gan_core.files import make_dir, write_atomic
from gan_core.judge.labels import FAILURES, FORESEEN_FAILURES, SEALED_LABELS
from sweeps.paths import ATLAS_FOLDERS
from sweeps.report.data import FAIL, StudyData, load_study_data, median_trial
from sweeps.report.verdicts import MIN_RUNS, Arm, ClaimVerdict, claim_verdict
from sweeps.stores.reading import StoredStudies, TrackedRuns
from sweeps.study.claims import BY_ID, CURES, PITFALL_VERDICTS, RUN_FLAGS, Claim

COVERED = {"1": ("diverged",), "2": ("diverged",), "3": ("d_overpowered",), "5": (),
           "4": FORESEEN_FAILURES, "adaptive": FORESEEN_FAILURES, "headline": FORESEEN_FAILURES,
           **{c: FAILURES for c in CURES}}
"""The failure labels each claim's verdict speaks of; any other failure in its study is a finding.
No claim of the seed foresees a stalled run (every gradient exactly zero; its label declares it
unforeseen), so it is always one; the cures' verdicts name every failure label they see."""


@dataclass(frozen=True)
class Row:
    """One claim's row of the atlas."""

    claim: Claim
    """The claim."""
    study: str | None
    """The study's name in storage that the verdict rests on (None: not in storage)."""
    verdict: ClaimVerdict
    """The verdict, its sentence and its arms."""
    runs: int
    """Finished runs in that study."""
    thumbs: dict[str, bytes] = field(default_factory=dict)
    """Arm name -> PNG of the typical final samples of that arm."""

    @property
    def settle(self) -> str:
        """What would settle an inconclusive verdict."""
        v = self.verdict
        if v.status not in ("inconclusive", "not tested"):
            return ""
        if self.study is None:
            return f"run {self.claim.study}"
        if v.why_open:
            return v.why_open
        if v.arms and min(a.n for a in v.arms[:2]) < MIN_RUNS:
            return f"at least {MIN_RUNS} seeds per arm"
        if v.seeds_needed:
            return f"about {v.seeds_needed} seeds per arm"
        return "no difference at this budget" if v.status == "inconclusive" else ""


def pick_study(names: list[str], study: str, profile: str | None, sizes: dict[str, int]) -> str | None:
    """The stored study for a built-in one: `<study>-<profile>` when it has trials, else the variant
    of it (`-<dataset>`, `-e<epochs>`) or, with no profile asked for, of any profile, with the most
    trials."""
    profiles = (profile,) if profile else ("full", "quick")
    for p in profiles:
        if f"{study}-{p}" in names and sizes.get(f"{study}-{p}", 0) > 0:
            return f"{study}-{p}"
    variants = [n for n in names if any(n == f"{study}-{p}" or n.startswith(f"{study}-{p}-") for p in profiles)]
    if not variants:
        return None
    return max(variants, key=lambda n: (sizes.get(n, 0), n))


def _typical(data: StudyData, arm: Arm) -> pd.Series | None:
    """The arm's typical finished run (`sweeps.report.data.median_trial`) among those with an MLflow run."""
    df = data.finished
    g = df[df["trial"].isin(arm.trials)].dropna(subset=["mlflow_run_id"])
    return None if g.empty else median_trial(g, data.metric)


def thumbnails(data: StudyData, verdict: ClaimVerdict, runs: TrackedRuns | None) -> dict[str, bytes]:
    """Per arm, the final sample grid (PNG bytes) of its typical run, from MLflow."""
    if runs is None:
        return {}
    out: dict[str, bytes] = {}
    for arm in verdict.arms:
        row = _typical(data, arm)
        png = None if row is None else runs.grid(row["mlflow_run_id"])
        if png is not None:
            out[arm.name] = png
    return out


def _where(data: StudyData, g: pd.DataFrame, df: pd.DataFrame) -> str:
    """Where in the design rows `g` fall: per combination of the swept keys, k of n."""
    keys = [k for k in data.swept if k in df]
    if not keys:
        return f"{len(g)} of {len(df)}"
    label = df[keys].astype(str).apply(lambda row: ", ".join(f"{k} = {v}" for k, v in row.items()), axis=1)
    parts = [f"{lv}: {int(label[g.index].eq(lv).sum())} of {int(label.eq(lv).sum())}"
             for lv in dict.fromkeys(label[g.index])]
    return "; ".join(parts)


def findings(studies: dict[str, tuple[StudyData, tuple[str, ...]]]) -> list[str]:
    """What the trials show that no claim's verdict speaks of: sealed failures outside the claims'
    labels (always: stalled runs), and trials that crashed. Runs that simply have not trained enough
    yet (mode_collapse, poor_quality at a short budget) are each study's own business, not findings."""
    found = []
    for name, (data, claim_ids) in studies.items():
        df = data.finished
        covered = {lab for c in claim_ids for lab in COVERED[c]}
        for label in SEALED_LABELS:
            g = df[df["outcome"] == label]
            if g.empty or label in covered:
                continue
            text = f"{name}: {label} in {len(g)} of {len(df)} runs ({_where(data, g, df)})."
            if label == "stalled":
                clamped = "clamp" in df and (df.loc[g.index, "clamp"].astype(str) == "clamp").all()
                text += (" D saturated at 1 on real and fake data" + (" and the clamp" if clamped else ", which")
                         + " zeroed every gradient: training died without a NaN and without D's loss going to 0, "
                           "a failure none of the seed's claims foresees.")
            elif label == "d_overpowered":
                text += " D won (loss ~0, D(G(z)) ~0) here too, where the seed's pitfall 3 is not what is tested."
            evidence = g["evidence"].dropna()
            if len(evidence):
                text += f" Evidence of one: {str(evidence.iloc[0])[:220]}"
            found.append(text)
        crashed = int((data.trials["outcome"] == FAIL).sum())
        if crashed:
            found.append(f"{name}: {crashed} trial(s) crashed or were interrupted (FAIL); left out of every count "
                         f"(reasons in its trials.csv).")
    return found


@dataclass(frozen=True)
class Atlas:
    """Everything the page shows."""

    rows: list[Row]
    """One per claim, in the order of sweeps/study/claims.py."""
    findings: list[str]
    """What no claim covers."""
    storage: str
    """Where the studies were read (password masked)."""
    missing: list[str]
    """Built-in studies not found in storage."""
    studies: dict[str, StudyData] = field(default_factory=dict)
    """The stored studies the rows rest on, by name (their reports are written beside the atlas)."""

    @property
    def decided(self) -> int:
        """Pitfall verdicts (the five and the adaptive rule) that are not inconclusive or untested."""
        return sum(r.verdict.status in ("supported", "contradicted") for r in self.rows
                   if r.claim.id in PITFALL_VERDICTS)


def build(studies: StoredStudies, runs: TrackedRuns | None, profile: str | None, claim_ids: tuple[str, ...]) -> Atlas:
    """The atlas over the stored studies (each loaded once, when a claim needs it)."""
    names, sizes = list(studies.sizes), studies.sizes
    loaded: dict[str, StudyData] = {}

    def data_for(name: str) -> StudyData:
        if name not in loaded:
            loaded[name] = load_study_data(studies.load(name))
        return loaded[name]

    rows, used, missing = [], {}, []
    for claim in (BY_ID[i] for i in claim_ids):
        name = pick_study(names, claim.study, profile, sizes)
        if name is None:
            missing.append(claim.study)
            rows.append(Row(claim, None, ClaimVerdict(claim.id, claim.text, "not tested",
                                                 f"No {claim.study} study in storage: `gan-sweep run {claim.study}` "
                                                 f"(or `gan-sweep atlas {RUN_FLAGS[claim.group]}`) runs it."), 0))
            continue
        data = data_for(name)
        v = claim_verdict(data, claim.id)
        used.setdefault(name, (data, ()))
        used[name] = (data, used[name][1] + (claim.id,))
        rows.append(Row(claim, name, v, len(data.finished), thumbnails(data, v, runs)))
    return Atlas(rows, findings(used), studies.shown, list(dict.fromkeys(missing)),
                 {name: data for name, (data, _) in used.items()})


READINGS_NOTE = ("Every run is a reading of the seed: each choice it leaves open is a config key "
                 "(gan_core/readings.py). The headline is judged in the most literal reading and in each single "
                 "change from it; a verdict holds for the readings it names.")

STATUS_COLOUR = {"supported": "#1a7f37", "contradicted": "#cf222e", "inconclusive": "#9a6700", "not tested": "#6e7781"}


def _arms_text(v: ClaimVerdict) -> str:
    return "; ".join(f"{a.name.removeprefix('With ').removeprefix('with ')}: {a.k}/{a.n}" for a in v.arms)


def table(atlas: Atlas) -> pd.DataFrame:
    """atlas.csv: one row per claim."""
    return pd.DataFrame([{
        "claim": r.claim.id, "title": r.claim.title, "claimed": r.claim.text, "status": r.verdict.status,
        "study": r.study or "", "runs": r.runs, "arms": _arms_text(r.verdict), "settle_with": r.settle,
        "sentence": r.verdict.sentence, "report": f"../{r.study}/report.html" if r.study else "",
    } for r in atlas.rows])


def _settle_head(r: Row) -> str:
    return "Why it stays open" if r.verdict.why_open else "To settle it"


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")[:60]


def write(atlas: Atlas, folder: Path) -> dict[str, Path]:
    """atlas.csv, atlas.md (+ thumbs/) and a self-contained atlas.html in `folder`."""
    make_dir(folder)
    files = {"csv": folder / "atlas.csv", "md": folder / "atlas.md", "html": folder / "atlas.html"}
    write_atomic(files["csv"], table(atlas).to_csv(index=False))
    thumbs = make_dir(folder / ATLAS_FOLDERS[0])  # a link there is refused, never emptied
    for old in thumbs.glob("*.png"):  # a rebuilt page names its arms afresh
        old.unlink()
    pitfalls = [r for r in atlas.rows if r.claim.id in PITFALL_VERDICTS]
    head = (f"{atlas.decided} of {len(pitfalls)} pitfall verdicts decided (supported or contradicted); "
            f"studies read from {atlas.storage}.")
    md = ["# The seed's claims: an atlas", "", head, "",
          "| claim | what is claimed | verdict | runs (per arm: showing the failure / all) | study |", "| --- | --- | --- | --- | --- |"]
    body = [f"<h1>The seed's claims: an atlas</h1><p>{html.escape(head)}</p>",
            "<table class='t'><tr><th>claim</th><th>what is claimed</th><th>verdict</th><th>runs (per arm: showing the failure / all)</th>"
            "<th>samples per arm</th><th>study</th></tr>"]
    for r in atlas.rows:
        v = r.verdict
        link_md = f"[{r.study}](../{r.study}/report.html)" if r.study else "not in storage"
        md.append(f"| {r.claim.id}. {r.claim.title} | {r.claim.text} | **{v.status}** | "
                  f"{r.runs} ({_arms_text(v) or '-'}) | {link_md} |")
        cells = []
        for arm, png in r.thumbs.items():
            cells.append(f"<figure><img alt='{html.escape(arm)}' src='data:image/png;base64,"
                         f"{base64.b64encode(png).decode()}'><figcaption>{html.escape(arm)}</figcaption></figure>")
        link = (f"<a href='../{html.escape(r.study)}/report.html'>{html.escape(r.study)}</a>" if r.study
                else "not in storage")
        body.append(f"<tr><td><b>{html.escape(r.claim.id)}.</b> {html.escape(r.claim.title)}</td>"
                    f"<td>{html.escape(r.claim.text)}</td>"
                    f"<td><span class='s' style='background:{STATUS_COLOUR[v.status]}'>{v.status}</span>"
                    + (f"<br><small>{_settle_head(r).lower()}: {html.escape(r.settle)}</small>" if r.settle else "")
                    + f"</td><td>{r.runs}<br><small>{html.escape(_arms_text(v))}</small></td>"
                    f"<td class='th'>{''.join(cells) or '<small>no samples</small>'}</td><td>{link}</td></tr>")
    body.append("</table>")
    md += ["", "## Readings: what the seed leaves open", "", READINGS_NOTE, "", readings.markdown()]
    rows = readings.table()
    body.append(f"<h2>Readings: what the seed leaves open</h2><p>{html.escape(READINGS_NOTE)}</p><table class='t'><tr>"
                + "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r.values()) + "</tr>" for r in rows)
                + "</table>")
    md += ["", "## The verdicts, with their numbers", ""]
    body.append("<h2>The verdicts, with their numbers</h2>")
    for r in atlas.rows:
        v = r.verdict
        heading = f"{r.claim.id}. {r.claim.title}: {v.status}"
        md += [f"### {heading}", "", f'{r.claim.source}: "{r.claim.text}"', "", v.sentence]
        if r.settle:
            md += ["", f"{_settle_head(r)}: {r.settle}."]
        for arm, png in r.thumbs.items():
            name = f"{_slug(r.claim.id)}-{_slug(arm)}.png"
            write_atomic(thumbs / name, png)
            md += ["", f"![{arm}](thumbs/{name})", f"*{arm}*"]
        md.append("")
        body.append(f"<h3>{html.escape(heading)}</h3><p><i>{r.claim.source}: \"{html.escape(r.claim.text)}\"</i></p>"
                    f"<p>{html.escape(v.sentence)}</p>"
                    + (f"<p>{_settle_head(r)}: {html.escape(r.settle)}.</p>" if r.settle else ""))
    md += ["## Findings no claim covers", ""]
    body.append("<h2>Findings no claim covers</h2>")
    if atlas.findings:
        md += [f"- {f}" for f in atlas.findings]
        body.append("<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in atlas.findings) + "</ul>")
    else:
        md.append("None in these trials.")
        body.append("<p>None in these trials.</p>")
    write_atomic(files["md"], "\n".join(md) + "\n")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table.t{border-collapse:collapse;font-size:13px;display:block;overflow-x:auto}"  # scrolls in its box
             "table.t td,table.t th{border:1px solid #ccc;padding:4px 6px;vertical-align:top}.s{color:#fff;padding:1px 6px;border-radius:8px;white-space:nowrap}"
             "td.th{min-width:240px}td.th figure{display:inline-block;margin:2px;text-align:center;vertical-align:top}td.th img{width:110px;"
             "image-rendering:pixelated}figcaption{font-size:11px;max-width:110px}")
    write_atomic(files["html"], "<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
                             "content='width=device-width, initial-scale=1'><title>gan-sweep atlas</title>"
                             f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
    return files


def write_study_reports(atlas: Atlas, runs: TrackedRuns | None, out_dir: Path) -> None:
    """Each study the atlas rests on gets its report beside it, so the links lead somewhere."""
    from sweeps.paths import under
    from sweeps.report import page as report

    for name, data in atlas.studies.items():  # a name from storage is checked like one from the command line
        report.write(report.build(data, runs), under(out_dir, name))
