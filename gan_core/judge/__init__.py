"""The judge: what a run's samples are worth and which label the run gets, with everything that fixes
its scale. The engines and `sweeps` import its modules by name; this package imports none of them
itself, and `gan_core.records` (which everything shares) imports nothing of it.

`labels`: every outcome label declared once (its name, meaning, short column head, colour, whether it
seals a run, whether the seed's claims foresee it); LABELS, FAILURES and SEALED_LABELS follow from it.

`thresholds`: where each label begins (`Thresholds`, MNIST's defaults) and the cut-offs inside the
evaluator's measures (legible, class covered or present, one mode, the success landmark), each once.

`classifier`: the evaluator's small CNN with a "not data" class, and its deterministic training.

`metrics`: the quality measures on its features and class probabilities (FLD, precision and recall,
class counts, distinct modes, pixel spread).

`evaluator`: scores a set of generated images on one scale (`Quality`) against a data set's held-out
split, and calibrates that scale on the constructed sets.

`weights`: where the classifier's weights come from: shipped (checksummed) for MNIST, trained once and
cached for other data. The shipped files stay in `gan_core/data_files/evaluator/`.

`reference_cache`: the evaluator's real side, kept once per weights, images, device and code.

`constructed`: image sets with known answers (real, degraded, memorised, missing classes, scribbles,
mixtures, blobs, noise), and the judge checked on them (`gan-sweep calibrate`).

`outcome`: the judge itself: a label for one quality measurement, and `Judge`, which labels a run
from its epochs (sealed failures during training, the final label at its end).

`ship`: `python -m gan_core.judge.ship` rebuilds the shipped MNIST evaluator and its record.
"""
