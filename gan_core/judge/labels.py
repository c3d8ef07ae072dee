"""Every outcome label, declared once: its name, what it means, how the report shows it, whether it
seals a run, and whether the seed's claims foresee it.

The rest follows from `LABELS_DECLARED`: `LABELS` (their order: the report's columns and the audit
sheet's groups), `FAILURES`, `SEALED_LABELS`, the terminal table's short column heads
(`sweeps.report.page.SHORT`), the figures' colours (`sweeps.report.figures.COLORS`) and the failures
the atlas expects some claim of the seed to speak of (`sweeps.report.atlas.COVERED`).
`tests/test_declarations.py` fails when a label lacks any of them. How a run earns each label is
`gan_core.judge.outcome`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Label:
    """One outcome label and everything declared about it."""

    name: str
    """The label as verdicts, trials, MLflow tags and the report's full tables carry it."""
    meaning: str
    """What a researcher sees in such a run, in a sentence: what happened, or what its grid looks like."""
    short: str
    """Its column head in the terminal's outcome table (80 columns)."""
    colour: str
    """Its colour in the report's figures (a matplotlib colour)."""
    seals: bool
    """Decided during training: nothing later can change it, so the run may stop."""
    foreseen: bool
    """Some claim of the seed speaks of it. A run sealed with a label no claim foresees is a finding in the
    atlas wherever a study of the seed's claims shows it (the cures' verdicts name every failure they see)."""
    counted: bool = True
    """Counted in success and failure rates; False: undecided (a run that ran past a budget this project
    states, not the seed), counted apart in every table and verdict."""


LABELS_DECLARED = (
    Label("diverged", "Training blew up: a loss, a gradient or a weight became NaN or infinite.",
          "div", "#d62728", seals=True, foreseen=True),
    Label("d_overpowered", "D won: it told every fake from the data (its loss ~0, D(G(z)) ~0) for epochs on end, "
          "and G had nothing left to learn from.", "D win", "#1f77b4", seals=True, foreseen=True),
    Label("stalled", "Training died without a NaN: no gradient reached G any more (D saturated, or every "
          "gradient exactly zero), and the grid froze.", "stall", "#8c564b", seals=True, foreseen=False),
    Label("hung", "The seed's uncapped inner G loop would never return: G's gradient stayed exactly zero inside "
          "it, so the literal program would still be running.", "hung", "#e377c2", seals=True, foreseen=True),
    Label("over_budget", "The seed's uncapped inner G loop ran past the bound this study follows it for "
          "(g_loop_bound): whether the literal program would have come back is not known, so the run is "
          "neither a success nor a failure.", "over", "#17becf", seals=True, foreseen=False, counted=False),
    Label("untrained", "G has not started: every cell shows the same static, a fuzzy speckle cloud or a flat "
          "grey tone, with no strokes anywhere.", "untr", "#bcbd22", seals=False, foreseen=True),
    Label("mode_collapse", "The grid repeats itself: most cells show the same shape, or digits of only a few "
          "classes, however well each one is drawn.", "coll", "#9467bd", seals=False, foreseen=True),
    Label("poor_quality", "The grid varies, but too many cells are no readable digit: smudges, fragments, "
          "blobs, scribbles, digits buried in speckle.", "poor", "#ff7f0e", seals=False, foreseen=True),
    Label("success", "A working GAN: most cells are digits a person can read, many different ones, each drawn "
          "its own way (some odd samples among them are normal).",
          "ok", "#2ca02c", seals=False, foreseen=True),
)
"""Every label, in the order the report lists them: the sealed failures, the final ones, success."""

LABELS = tuple(label.name for label in LABELS_DECLARED)
UNDECIDED = tuple(label.name for label in LABELS_DECLARED if not label.counted)
"""Labels counted apart: neither success nor failure."""
FAILURES = tuple(name for name in LABELS if name != "success" and name not in UNDECIDED)
SEALED_LABELS = tuple(label.name for label in LABELS_DECLARED if label.seals)
"""Labels decided during training: nothing later can change them, so the run may stop."""
FORESEEN_FAILURES = tuple(label.name for label in LABELS_DECLARED if label.foreseen and label.name in FAILURES)
"""The failures some claim of the seed speaks of (all but stalled)."""
