"""The seed's claims, and the field's cures beside them, each declared once: what it says, the
built-in study that tests it, and the failure it is about. Study files name the claims they test (`claims = [1]`); the report gives a
verdict on each, and `gan-sweep atlas` gathers one row per claim. No pandas here: `gan-sweep show`
and the study-file parser read this module too."""

from __future__ import annotations

from dataclasses import dataclass

from gan_core import toggles


@dataclass(frozen=True)
class Claim:
    """One thing the seed says, and where gan-sweep tests it."""

    id: str
    """Its short name: the seed's pitfall number ("1" to "5"), "adaptive", "headline", or a cure's config key."""
    title: str
    """A few words for a table's row."""
    text: str
    """What the seed says, in its words as far as English allows (for a cure: what its paper says)."""
    study: str
    """The built-in study that tests it."""
    group: str = "pitfall"
    """pitfall (the seed's five and its adaptive rule), headline, or cure (the field's, and the seed's own together)."""
    source: str = "The seed"
    """Who makes the claim, for the page's quotes."""


CLAIMS: tuple[Claim, ...] = (
    Claim("1", "Clamp D's output", "Clamp D's output when computing the loss, or the log blows up.", "clamp-study"),
    Claim("2", "Clip gradients", "GANs easily explode their gradients: clip gradients while training.", "clip-study"),
    Claim("3", "D winning kills training",
          "If D trains faster and its loss becomes 0, the loss stays 0 and training may die.", "schedule-study"),
    Claim("4", "Too small an lr",
          "Too small an lr makes |L1| and |L2| high while the actual results are poor.", "lr-study"),
    Claim("5", "requires_grad_(False), not eval()",
          "After eval() gradients are still computed: use requires_grad_(False), or clear both nets' gradients.",
          "freeze-study"),
    Claim("adaptive", "The adaptive G rule",
          "Let G rest int(1 + |l| * 6) batches after it trains, and keep training G while |l| < 0.1: "
          "a schedule that keeps D from winning.", "schedule-study"),
    Claim("headline", "The seed's headline",
          "With lr = 1e-4, after 120 epochs of MNIST the samples look good.", "reproduce-seed", "headline"),
    *(Claim(t.key, t.title, t.text, "cures-study", "cure", "The field") for t in toggles.CURES),
    Claim("seed_cures", "The seed's own cures",
          "The clamp, gradient clipping and the adaptive rule are what make the seed's GAN train.", "cures-study",
          "cure"),
)
"""In the order the atlas lists them: the five pitfalls, the adaptive rule, the headline, the cures."""

BY_ID = {c.id: c for c in CLAIMS}
PITFALL_VERDICTS = tuple(c.id for c in CLAIMS if c.group == "pitfall")
"""The claims the atlas counts as pitfall verdicts: the five pitfalls and the adaptive rule (the headline
is a reproduction, not a pitfall)."""
RUN_FLAGS = {"pitfall": "--run", "headline": "--run --run-headline", "cure": "--run --run-cures"}
"""The `gan-sweep atlas` flags that run each group's study (the headline's and the cures' only when asked)."""
CURES = tuple(c.id for c in CLAIMS if c.group == "cure")
"""The cures-study's rows: the field's five cures, then the seed's own three."""


def claim_ids(raw: list | tuple | None) -> tuple[str, ...]:
    """A study file's `claims` list as ids (pitfall numbers may be written as integers); raises
    ValueError naming the first unknown one."""
    ids = tuple(str(x) for x in (raw or ()))
    for i in ids:
        if i not in BY_ID:
            raise ValueError(f"unknown claim {i!r} (known: {', '.join(BY_ID)})")
    return ids
