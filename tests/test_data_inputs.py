"""Data files a user points gan-sweep at (IDX files, gzipped or not): a broken one is a one-line error,
and nothing is written."""

import pytest
from conftest import assert_one_line_error, cli


def _idx(tmp_path, images: bytes, labels: bytes):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-images-idx3-ubyte.gz").write_bytes(images)
    (tmp_path / "data" / "train-labels-idx1-ubyte").write_bytes(labels)
    return tmp_path / "data"


@pytest.mark.parametrize("kind,message", [("deflate", "cannot read"), ("empty", "holds no data"),
                                          ("3x3", "needs 28x28")])
def test_broken_idx_files_are_one_line_errors(tmp_path, kind, message):
    import gzip
    import struct

    if kind == "deflate":
        blob = bytearray(gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">III", 10, 28, 28) + bytes(7840)))
        blob[20:40] = bytes(20)
        images = bytes(blob)
    elif kind == "empty":
        images = gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">III", 0, 28, 28))
    else:
        images = gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">III", 20, 3, 3) + bytes(180))
    n = {"deflate": 10, "empty": 0, "3x3": 20}[kind]
    folder = _idx(tmp_path, images, b"\x00\x00\x08\x01" + struct.pack(">I", n) + bytes(n))
    res = cli("train", "--no-track", "--dataset", "idx", "--data-dir", folder, "--epochs", "1",
              "--out", tmp_path / "run")
    assert_one_line_error(res.stderr, res.exit_code, message)
    assert not (tmp_path / "run").exists()
