import gzip

import pytest
import torch

from gan_core.data import IDX_IMAGES_MAGIC, DataError, load_dataset, read_idx

PUBLISHED_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_bundled_split_has_the_published_label_counts(mnist):
    assert mnist.images.shape == (8_000, 28, 28) and mnist.images.dtype == torch.uint8  # 2,000 held out
    whole = torch.cat([mnist.labels, mnist.held_out_labels])  # the GAN's 8,000 and the judge's 2,000
    assert torch.bincount(whole).tolist() == PUBLISHED_COUNTS
    assert "bundled" in mnist.source and "10k" in mnist.source
    # the evaluator's split: disjoint, 80/20
    assert len(mnist.clf_images) == 8000 and len(mnist.held_out_images) == 2000


def test_offline_mnist_falls_back_to_the_bundled_split(monkeypatch, tmp_path):
    monkeypatch.setenv("GAN_SWEEP_CACHE", str(tmp_path))
    monkeypatch.setenv("GAN_SWEEP_OFFLINE", "1")
    ds = load_dataset("mnist")
    assert len(ds.images) == 8_000 and "bundled" in ds.source


def _write_idx(folder, prefix, images, labels, gz=True):
    def blob(magic, t):
        header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in t.shape)
        return header + t.numpy().tobytes()
    opener = gzip.open if gz else open
    with opener(folder / f"{prefix}-images-idx3-ubyte{'.gz' if gz else ''}", "wb") as f:
        f.write(blob(0x0803, images))
    with opener(folder / f"{prefix}-labels-idx1-ubyte{'.gz' if gz else ''}", "wb") as f:
        f.write(blob(0x0801, labels))


def test_a_data_dir_of_idx_files_loads(tmp_path):
    x = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)
    y = torch.arange(50) % 10
    _write_idx(tmp_path, "train", x, y.to(torch.uint8), gz=False)
    ds = load_dataset("idx", tmp_path)
    assert torch.equal(ds.images, ds.clf_images) and len(ds.images) == 40  # the GAN's and the classifier's 80%
    whole = torch.cat([ds.images, ds.held_out_images])
    order = torch.cat([ds.labels, ds.held_out_labels])
    assert len(ds.held_out_images) == 10 and sorted(map(bytes, whole.reshape(50, -1).numpy())) == \
        sorted(map(bytes, x.reshape(50, -1).numpy())) and sorted(order.tolist()) == sorted(y.tolist())


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"\x00\x00\x08\x01" + bytes(20)), "bad magic number"),
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "header says"),
    (lambda p: p.write_bytes(b"\x1f\x8b garbage"), "cannot read"),
    (lambda p: p.unlink(), "missing data file"),
])
def test_corrupt_or_missing_idx_files_give_one_line_errors(tmp_path, damage, message):
    x = torch.zeros(20, 28, 28, dtype=torch.uint8)
    _write_idx(tmp_path, "train", x, torch.zeros(20, dtype=torch.uint8), gz=False)
    damage(tmp_path / "train-images-idx3-ubyte")
    with pytest.raises(DataError) as info:
        load_dataset("idx", tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name, data_dir, message", [
    ("cifar", None, "unknown dataset 'cifar'"),
    ("idx", None, "needs a data dir"),
    ("mnist", "/nonexistent/folder", "data dir not found"),
])
def test_bad_data_requests_are_one_line_errors(name, data_dir, message):
    with pytest.raises(DataError, match=message):
        load_dataset(name, data_dir)


def test_read_idx_checks_gzip_transparently(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress((0x0803).to_bytes(4, "big") + b"\x00\x00\x00\x01" * 3 + b"\x07"))
    assert read_idx(p, IDX_IMAGES_MAGIC).tolist() == [[[7]]]


def test_the_judge_s_reference_never_enters_the_gan_s_training_data(tmp_path, mnist):
    """FLD, precision and recall compare samples against held-out digits: under the bundled split (and any
    single split) those are held out from the GAN as well as from the classifier. Checked on the tensor
    each engine actually trains on, row by row."""
    from gan_core.config import RunConfig
    from gan_core.data import load_dataset, to_training_tensor
    from gan_core.judge.weights import reference_images
    from gan_core.judge.evaluator import REFERENCE_SIZE
    from gan_core.population import PopulationTrainer
    from gan_core.trainer import Trainer

    cfg = RunConfig().replace(dataset="mnist-10k", device="cpu", epochs=1, steps_per_epoch=1)
    reference = reference_images(mnist)[:REFERENCE_SIZE]
    ref_rows = to_training_tensor(reference, g_output="sigmoid", device=torch.device("cpu"), dtype=torch.float32)
    ref = {bytes(r.numpy()) for r in ref_rows}
    assert len(ref) == REFERENCE_SIZE
    for engine in (Trainer(cfg, mnist), PopulationTrainer([cfg], mnist)):
        rows = {bytes(r.numpy()) for r in engine.data}
        assert len(rows) > 7_900 and not rows & ref
    # a single split of one's own: its held-out fifth is the reference, and the GAN never sees it
    folder = tmp_path / "one"
    folder.mkdir()
    for kind, magic, t in (("images-idx3-ubyte", 0x0803, mnist.held_out_images), ("labels-idx1-ubyte", 0x0801,
                                                                                    mnist.held_out_labels.to(torch.uint8))):
        (folder / f"train-{kind}").write_bytes(magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in t.shape)
                                               + t.numpy().tobytes())
    own = load_dataset("idx", folder)
    train = {bytes(r.numpy()) for r in own.images.reshape(len(own.images), -1)}
    held = {bytes(r.numpy()) for r in reference_images(own).reshape(len(own.held_out_images), -1)}
    assert len(own.images) == 1600 and not train & held
