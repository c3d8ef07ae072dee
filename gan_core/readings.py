"""What the seed leaves open, each declared once as a reading: a config key, the seed's own line beside
it, which option is the most literal, and why this project's default is what it is.

A verdict on a claim of the seed holds only under the readings it was run in; `reproduce-seed` runs the
most literal reading (`LITERAL`) and each single change from it, and the README, `gan-sweep show` and the
atlas print `table()`. Nothing here is "the seed's configuration": the seed shows part of its code, and
every reproduction is a reading of the rest (`docs/seed.md`, "What the post leaves open").
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

from .config import FLAT_KEYS, RunConfig, field_type


@dataclass(frozen=True)
class Reading:
    """One choice the seed leaves open or elides, as a config key."""

    key: str
    """The flat config key that holds the choice."""
    choice: str
    """What is open, in a few words."""
    seed_line: str
    """The seed's own line (or words) where the choice is made or elided."""
    literal: str | None
    """The option that reads the seed most literally, as the flat view writes it (None: nothing to go by)."""
    why: str
    """Why that option is the literal one, and why our default is what it is."""
    options: str = ""
    """The options, where the key's type does not list them (a number's usual values)."""

    @property
    def choices(self) -> str:
        """The options as a user writes them."""
        hint = field_type(self.key)
        if typing.get_origin(hint) is typing.Literal:
            return ", ".join(typing.get_args(hint))
        return self.options

    @property
    def default(self) -> str:
        """This project's default for the key."""
        value = RunConfig().to_flat()[self.key]
        return str(value).lower() if isinstance(value, bool) else str(value)  # as a study file writes it


READINGS: tuple[Reading, ...] = (
    Reading("g_loop_cap", "the inner G loop's bound",
            "while (tmp_loss < 1.75 and rest_K <= 0) and abs(float(l)) < 1e-1:", "off",
            "nothing bounds the seed's loop; an uncapped loop is watched by the hang detector (g_loop_bound), "
            "not capped. Our default 20 is a reading of our own, kept so the pitfall studies stay comparable",
            "off, or a number of G steps"),
    Reading("rest_k_countdown", "how rest_K counts down",
            "rest_K = int(1 + abs(float(l)) * 6)  (the lines that count it down are elided)", "every_batch",
            "SEED.md lists the countdown on every batch first (G may train on the very next batch); "
            "our default counts only batches where G rested (G trains at most every other batch)"),
    Reading("tmp_loss", "what tmp_loss is", "while (tmp_loss < 1.75 and rest_K <= 0) ...  (never assigned)",
            "batch", "likely D's loss on the batch, real + fake term (log 4 = 1.386 at equilibrium, hence 1.75); "
            "the epoch's running mean (the elided sum_loss_D / num_tests_D) is another reading, and the previous "
            "epoch's mean, the current_loss train_epoch receives and never uses in the visible code, a third "
            "(0 in the first epoch, as a running loss started at 0 would be)"),
    Reading("rest_k_epoch", "rest_K across epochs", "rest_K = int(1 + abs(float(l)) * 6)  (inside train_epoch)",
            "reset", "assigned inside train_epoch, rest_K is a local: it starts afresh each epoch, at a value the "
            "elision hides (0: G may train on an epoch's first batch); our default carries it over, as the "
            "rule's state of the run"),
    Reading("d_output", "what the clamp receives",
            "y = torch.clamp(y, 1e-3, 1)  ...  y = torch.clamp(y, 0, 1 - 1e-3)", "sigmoid",
            "the text says D outputs a probability in [0, 1]; the clamp's outer bounds (1, 0) act only on a "
            "raw output, which is the other reading"),
    Reading("g_output", "G's output activation", "G: 3 linear layers and 2 ReLU", "none",
            "the seed names no activation after G's last layer; our default, a sigmoid, puts pixels in [0, 1] "
            "like MNIST's (tanh with pixels in [-1, 1] is the usual DCGAN choice)"),
    Reading("optimiser", "the optimiser", "lr = 1e-4", "adam",
            "the seed names only the learning rate; Adam is the usual reading of a 2017-era PyTorch GAN"),
    Reading("beta1", "Adam's beta1", "lr = 1e-4", "0.9",
            "the library's default where the seed says nothing; 0.5 is the common GAN choice (DCGAN)",
            "in [0, 1); 0.9 (torch's default), 0.5 (DCGAN)"),
    Reading("beta2", "Adam's beta2", "lr = 1e-4", "0.999", "the library's default where the seed says nothing",
            "in [0, 1)"),
    Reading("dataset", "the data", "A GAN trained on MNIST ... after 120 epochs", "mnist",
            "MNIST's 60k training split is usual; offline only the bundled 10k test split exists (2,000 of "
            "it held out for the judge), and reproduce-seed runs its 8,000 training images for 900 epochs: "
            "112,500 steps of 64, the seed's 120 epochs of the 60k split in steps",
            "mnist (60k, falls back to the 10k split offline), mnist-10k"),
    Reading("batch_size", "the batch size", "batch_size = X.shape[0]", None,
            "not given; 64 is our default", "a positive integer"),
    Reading("last_batch", "an epoch's last, smaller batch", "batch_size = X.shape[0]", "keep",
            "the line exists to serve a last batch smaller than the rest, so the seed keeps it; our default drops "
            "it (every batch the same size; the bundled split's 8,000 training images make 125 full batches of "
            "64 and none left over, the 60k split 937 and one of 32)"),
    Reading("d_hidden", "D's width", "D: 2 linear layers and 1 LeakyReLU", None,
            "not given; 256 is our default", "a positive integer"),
    Reading("g_hidden", "G's widths", "G: 3 linear layers and 2 ReLU", None,
            "not given; 256,512 is our default", "two positive integers"),
    Reading("z_dim", "the latent size", "Z = torch.randn(batch_size, G_input_size)", None,
            "not given; 100 is our default", "a positive integer"),
    Reading("leaky_slope", "D's LeakyReLU slope", "1 LeakyReLU", "0.01",
            "torch's default slope; our default 0.2 is the usual GAN choice", "in [0, 1)"),
    Reading("precision", "matmul precision", "(not stated)", "fp32", "fp32 was the norm; bf16 is a speed choice"),
    Reading("stop_early", "stopping", "after 120 epochs", "false",
            "the seed trains every epoch; our default stops a run whose fate is sealed", "true, false"),
)
"""Every choice the seed leaves open, in the order the tables list them."""

BY_KEY = {r.key: r for r in READINGS}
LITERAL: dict[str, str] = {r.key: r.literal for r in READINGS if r.literal is not None}
"""The most literal reading, as flat config overrides (keys with nothing to go by keep our default)."""

assert set(BY_KEY) <= FLAT_KEYS, set(BY_KEY) - FLAT_KEYS  # a reading names a real key (checked on import)


def differences(flat: dict) -> list[str]:
    """`key = value` for each reading where a flat config departs from the most literal one."""
    return [f"{k} = {flat[k]}" for k, lit in LITERAL.items() if k in flat and str(flat[k]).lower() != lit]


def table() -> list[dict[str, str]]:
    """One row per reading: the choice, its key, the seed's line, the options, the literal one, our default, why."""
    return [{"choice": r.choice, "key": r.key, "the seed's line": r.seed_line, "options": r.choices,
             "most literal": r.literal or "(nothing to go by)", "our default": r.default, "why": r.why}
            for r in READINGS]


def markdown() -> str:
    """`table()` as a Markdown table (the README holds it verbatim; a test keeps the two equal)."""
    rows = table()
    cols = list(rows[0])

    def cell(v: str) -> str:
        return v.replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(cell(f"`{r[c]}`" if c in ("key", "the seed's line") else r[c]) for c in cols) + " |"
              for r in rows]
    return "\n".join(lines)
