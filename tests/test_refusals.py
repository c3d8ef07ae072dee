"""Bad flags, study files and numbers: each is refused in one line (`error: ...`, exit 2) before anything
is written: no store, no report, no checkpoint folder. Every number a user gives is bounded, and no name
escapes its folder."""

import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error, cli, main_cli, stores, study_file


def nothing_written(tmp_path, *also):
    """`tmp_path` holds nothing but the study files, the data folder and `also`."""
    names = {p.name for p in tmp_path.iterdir()} - {"scale.toml", "bad.toml", "data", *also}
    assert not names, names


def listing(folder: Path) -> set[str]:
    """Every path under `folder`, relative to it."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _bad_study(tmp_path, extra_space="", fixed="", name="scale", sampler="", seeds="[0]", body=""):
    """`bad.toml`: a one-trial grid study with the given lines added to its sections."""
    path = tmp_path / "bad.toml"
    path.write_text(f"""
name = "{name}"
seeds = {seeds}
{body}
[sampler]
kind = "grid"
{sampler}
[space]
lr_d = {{ values = [1e-4] }}
{extra_space}
[fixed]
dataset = "mnist-10k"
{fixed}
[profiles.quick]
epochs = 1
steps_per_epoch = 2
eval_samples = 64
""")
    return path


BAD = [
    # (id, how to build the study file, extra CLI args, message)
    ("name-traversal", dict(name="../../escape"), [], "name '../../escape' is not allowed"),
    ("study-name-abs", {}, ["--study-name", "/tmp/escape"], "study name '/tmp/escape' is not allowed"),
    ("study-name-dots", {}, ["--study-name", "../x"], "is not allowed"),
    ("study-name-long", {}, ["--study-name", "é" * 200], "is not allowed"),
    ("batch-over-data", dict(extra_space="batch_size = { values = [64, 20000] }"), [],
     "batch_size 20000 is larger than the data set"),
    ("z-dim-huge", dict(extra_space="z_dim = { values = [100, 200000000] }"), [], "z_dim must be at most"),
    ("eval-samples-huge", dict(extra_space="eval_samples = { values = [1000000000000] }"), [],
     "eval_samples must be at most"),
    ("eval-samples-below-knn", dict(extra_space="eval_samples = { values = [64, 3] }"), [],  # k-NN needs k + 1
     "eval_samples must be a whole number of at least 4"),
    ("widths-beyond-memory", dict(extra_space='g_hidden = { values = ["256,512", "65536,65536"] }'), [],
     "GiB of memory (networks"),
    ("lr-overflow", dict(extra_space="lr_g = { values = [1e300] }"), [], "lr_g must be at most"),
    ("seed-too-big", dict(seeds="[9223372036854775808]"), [], "seeds must be"),
    ("sampler-seed-negative", dict(sampler="seed = -5"), [], "sampler.seed must be from 0"),
    ("sampler-seed-huge", dict(sampler="seed = 1099511627776"), [], "sampler.seed must be from 0"),
    ("sqlite-no-file", {}, ["--storage", "sqlite:///"], "names no file"),
    ("sqlite-memory", {}, ["--storage", "sqlite:///:memory:"], "names no file"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_inputs_are_one_line_errors_and_nothing_is_written(tmp_path, monkeypatch, case):
    _, build, extra, message = case
    monkeypatch.chdir(tmp_path)
    spec = _bad_study(tmp_path, **build)
    storage, tracking = stores(tmp_path)
    args = ["run", spec, "--device", "cpu", "--storage", storage, "--tracking-uri", tracking, "--out",
            tmp_path / "reports", "--checkpoint-dir", tmp_path / "ckpt"]
    for flag in ("--storage", "--study-name"):  # a case's own flag replaces the default one
        if flag in extra and flag in args:
            i = args.index(flag)
            del args[i:i + 2]
    res = cli(*args, *extra)
    assert_one_line_error(res.stderr, res.exit_code, message)
    nothing_written(tmp_path)


REFUSED = [
    # (id, study file builder kwargs or a callable(tmp_path) -> path, extra args, message)
    ("swept-tf32-on-cpu", dict(extra_space='precision = { values = ["fp32", "tf32"] }'), [], "tf32 needs a CUDA GPU"),
    ("swept-bf16-with-float64", dict(extra_space='precision = { values = ["fp32", "bf16"] }', fixed='dtype = "float64"'),
     [], "applies to float32 runs"),
    ("config-seeds-outside", dict(body='configs = [{ lr_d = 1e-4, seeds = [5] }]'), [],
     "names seeds none of which"),
    ("description-huge", dict(body=f'description = "{"x" * 100_000}"'), [], "description is 100,000 characters"),
    ("empty-study-name", {}, ["--study-name", ""], "study name '' is not allowed"),
    ("empty-profile", {}, ["--profile", ""], "--profile must be one of"),
    ("heartbeat-huge", {}, ["--heartbeat", "10000000000"], "--heartbeat must be from 1 to 3,600"),
    ("population-huge", {}, ["--population-size", "100000000"], "--population-size must be from 1"),
    ("out-in-proc", {}, ["--out", "/proc/gan-sweep-x"], "is not writable"),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_bad_inputs_are_refused_before_any_store_exists(tmp_path, monkeypatch, case):
    _, build, extra, message = case
    monkeypatch.chdir(tmp_path)
    if "body" in build and "configs" in build["body"]:
        path = tmp_path / "bad.toml"
        path.write_text('name = "bad"\nseeds = [0, 1]\n' + build["body"] + '\n[sampler]\nkind = "grid"\n'
                        '[fixed]\ndataset = "mnist-10k"\n[profiles.quick]\nepochs = 1\n')
    else:
        path = _bad_study(tmp_path, name="bad", **build)
    storage, tracking = stores(tmp_path)
    args = ["run", path, "--device", "cpu", "--storage", storage, "--tracking-uri", tracking]
    if "--out" not in extra:
        args += ["--out", tmp_path / "reports"]
    res = cli(*args, "--checkpoint-dir", tmp_path / "ckpt", *extra)
    assert_one_line_error(res.stderr, res.exit_code, message)
    assert listing(tmp_path) == {"bad.toml"}


@pytest.mark.parametrize("flag", ["--out", "--checkpoint-dir"])
def test_an_output_folder_that_is_a_file_is_refused_before_anything_is_written(tmp_path, flag):
    spec = study_file(tmp_path, lrs=1, seeds=1)
    (tmp_path / "afile").write_text("x")
    storage, tracking = stores(tmp_path)
    res = cli("run", spec, "--device", "cpu", "--storage", storage, "--tracking-uri", tracking, flag,
              tmp_path / "afile")
    assert_one_line_error(res.stderr, res.exit_code, "is a file, not a folder")
    nothing_written(tmp_path, "afile")


def test_a_huge_grid_is_refused_at_once_and_shown_without_building_it(tmp_path):
    values = ", ".join(str(i) for i in range(1, 1001))
    spec = _bad_study(tmp_path, extra_space=f"z_dim = {{ values = [{values}] }}\nd_hidden = {{ values = [{values}] }}\n"
                                            f"batch_size = {{ values = [{values}] }}")
    storage, tracking = stores(tmp_path)
    t0 = time.perf_counter()
    res = cli("run", spec, "--device", "cpu", "--storage", storage, "--tracking-uri", tracking)
    assert_one_line_error(res.stderr, res.exit_code, "plans 1,000,000,000 trials")
    shown = cli("show", spec)
    assert shown.exit_code == 0 and "1000000000 trials" in shown.stdout
    assert time.perf_counter() - t0 < 30
    nothing_written(tmp_path)


def test_a_study_file_that_is_not_utf8_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'name = "\xff\xfe"\n')
    res = cli("show", bad)
    assert_one_line_error(res.stderr, res.exit_code, "not a UTF-8 text file")


def test_a_study_file_nested_a_thousand_deep_is_one_line(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 1000 + "]" * 1000 + "\n")
    res = cli("show", path)
    assert_one_line_error(res.stderr, res.exit_code, "nested too deeply")


def test_a_folder_named_like_a_built_in_study_does_not_hide_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke").mkdir()  # e.g. a run's folder, or reports/ copied here
    code, out, err = main_cli(["show", "smoke"], capsys)
    assert code == 0 and "smoke" in out, err
    code, out, err = main_cli(["studies"], capsys)
    assert code == 0 and "reproduce-seed" in out, err
    (tmp_path / "mine").mkdir()
    code, _, err = main_cli(["show", "mine"], capsys)
    assert code == 2 and "study file not found: mine" in err


@pytest.mark.parametrize("url", ["postgresql://u:p@[::1/x", "postgresql://u:p@db:99x/x"])
def test_a_malformed_storage_host_is_one_line(tmp_path, url):
    res = cli("run", study_file(tmp_path, lrs=1, seeds=1), "--device", "cpu", "--storage", url,
              "--tracking-uri", stores(tmp_path)[1])
    assert_one_line_error(res.stderr, res.exit_code, "is malformed")


def test_train_with_a_bad_dataset_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli("train", "--dataset", "no-such-data", "--epochs", "1")
    assert_one_line_error(res.stderr, res.exit_code, "unknown dataset")
    assert not list(tmp_path.iterdir())


def test_bench_checks_its_device_and_output_before_running(tmp_path):
    res = cli("bench", "--device", "banana")
    assert_one_line_error(res.stderr, res.exit_code, "device must be auto, cpu, cuda or cuda:N")
    t0 = time.perf_counter()
    res = cli("bench", "--device", "cpu", "--out", tmp_path / "no" / "such" / "x.json")
    assert_one_line_error(res.stderr, res.exit_code, "does not exist")
    assert time.perf_counter() - t0 < 10  # refused before the benchmark ran


@pytest.mark.parametrize("args,message", [
    (["--sizes", "100000000"], "--sizes must be from 1 to 4,096"),
    (["--sizes", "4096"], "GiB of memory"),  # every row is built before the first is timed
    (["--steps", "100000000"], "--steps from 2 to 10,000"),
    (["--repeats", "0"], "--repeats from 1 to 100"),
    (["--out", "/proc/gan-sweep-bench.json"], "is not writable"),
    (["--study", "no-such-study"], "no-such-study"),
    (["--study", "lr-study", "--profile", "nope"], "nope"),
])
def test_bench_refuses_numbers_and_paths_it_cannot_use(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    res = cli("bench", "--device", "cpu", *args)
    assert_one_line_error(res.stderr, res.exit_code, message)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # a real process without root's capability (about 7 s): kept out of the quick tier
def test_a_read_only_study_folder_inside_out_is_refused_before_any_store_exists(tmp_path):
    """Where the study's report will go is checked with the rest, not when the report is written after
    every trial ran. Permission bits say yes to root, so the command runs without the capability that
    overrides them (`setpriv`)."""
    import os
    import shutil
    import subprocess
    import sys

    if os.getuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("root without setpriv: the permission bits cannot be made to hold")
    study = tmp_path / "r" / "scale-quick"
    study.mkdir(parents=True)
    study.chmod(0o555)
    drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"] if os.getuid() == 0 else []
    storage, tracking = stores(tmp_path)
    try:
        proc = subprocess.run([*drop, sys.executable, "-m", "sweeps", "run", str(study_file(tmp_path, lrs=1, seeds=1)),
                               "--device", "cpu", "--storage", storage, "--tracking-uri", tracking,
                               "--out", str(tmp_path / "r"), "--checkpoint-dir", str(tmp_path / "ckpt")],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env=os.environ | {"OMP_NUM_THREADS": "1"})
    finally:
        study.chmod(0o755)
    assert_one_line_error(proc.stderr, proc.returncode, f"{study} is not writable")
    assert not (tmp_path / "o.db").exists() and not (tmp_path / "m.db").exists() and not (tmp_path / "ckpt").exists()
