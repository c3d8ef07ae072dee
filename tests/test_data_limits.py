"""Data files are checked before anything is written and read within stated bounds: a compressed file
never decompresses past what its header declares, a header declaring more than gan-sweep reads is refused
unread, and labels and split sizes that the evaluator cannot use are one line, exit 2, nothing kept."""

import gzip
import tracemalloc

import pytest
import torch
from conftest import assert_one_line_error, main_cli

from gan_core.data import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, MAX_IMAGES, DataError, read_idx


def _header(magic: int, dims: list[int]) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)


def _write_gz_stream(path, header: bytes, zero_bytes: int) -> None:
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(header)
        chunk = bytes(1 << 22)
        left = zero_bytes
        while left:
            f.write(chunk[:min(left, len(chunk))])
            left -= min(left, len(chunk))


def test_a_header_declaring_more_than_the_bound_is_refused_before_any_data_is_read(tmp_path):
    """Two million blank images in 1.5 MB of gzip: refused from the header alone."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    _write_gz_stream(path, _header(IDX_IMAGES_MAGIC, [2 * MAX_IMAGES, 28, 28]), 1 << 20)
    tracemalloc.start()
    with pytest.raises(DataError, match="declares 2000000x28x28") as err:
        read_idx(path, IDX_IMAGES_MAGIC)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "at most 1,000,000 items" in str(err.value)
    assert peak < 4 << 20, f"{peak:,} bytes allocated to refuse a header"


def test_a_bomb_behind_a_small_header_is_never_decompressed_past_what_the_header_declares(tmp_path):
    """A header of 100 images followed by 600 MB of zeros (600 kB compressed): refused after reading
    100 images and one byte more."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    _write_gz_stream(path, _header(IDX_IMAGES_MAGIC, [100, 28, 28]), 600 << 20)
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    with pytest.raises(DataError, match="found more than 78400"):
        read_idx(path, IDX_IMAGES_MAGIC)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20, f"{peak:,} bytes allocated"


def test_the_bound_is_images_for_image_files_and_items_for_label_files(tmp_path):
    labels = tmp_path / "l"
    labels.write_bytes(_header(IDX_LABELS_MAGIC, [MAX_IMAGES + 1]))
    with pytest.raises(DataError, match="at most 1,000,000 items"):
        read_idx(labels, IDX_LABELS_MAGIC)
    ok = tmp_path / "ok"
    ok.write_bytes(_header(IDX_LABELS_MAGIC, [3]) + bytes([1, 2, 3]))
    assert read_idx(ok, IDX_LABELS_MAGIC).tolist() == [1, 2, 3]


def _idx_folder(folder, images: torch.Tensor, labels: torch.Tensor):
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").write_bytes(_header(IDX_IMAGES_MAGIC, list(images.shape)) +
                                                    images.numpy().tobytes())
    (folder / "train-labels-idx1-ubyte").write_bytes(_header(IDX_LABELS_MAGIC, [len(labels)]) +
                                                    labels.to(torch.uint8).numpy().tobytes())
    return folder


@pytest.mark.parametrize("dataset,labels,message", [
    ("mnist", "zeros", "every label is 0"),
    ("mnist", "255", "labels run from 255 to 255; mnist needs labels from 0 to 9"),
    ("idx", "zeros", "every label is 0"),
    ("idx", "255", "labels run from 255 to 255; idx needs labels from 0 to 99"),
    ("idx", "few", "its classifier split holds 800 images; the evaluator needs 2,000"),
    ("mnist", "five", "no image is labelled 5, 6, 7, 8, 9; mnist needs all ten classes"),  # the shipped evaluator has ten
])
def test_labels_and_split_sizes_the_evaluator_cannot_use_are_refused_before_anything_is_written(
        mnist, tmp_path, monkeypatch, capsys, dataset, labels, message):
    n = 1000
    values = {"zeros": torch.zeros(n), "255": torch.full((n,), 255), "few": mnist.labels[:n],
              "five": mnist.labels[:n] % 5}[labels]
    folder = _idx_folder(tmp_path / "data", mnist.images[:n], values)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cache = tmp_path / "cache"
    monkeypatch.setenv("GAN_SWEEP_CACHE", str(cache))
    code, _, err = main_cli(["train", "--dataset", dataset, "--data-dir", folder, "--epochs", "1"], capsys)
    assert_one_line_error(err, code, message)
    assert not list(work.iterdir()), "nothing written where the command ran (no MLflow store, no runs/)"
    assert not cache.exists(), "no classifier or reference trained and kept"
