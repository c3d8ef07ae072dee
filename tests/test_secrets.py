"""Passwords and tokens in storage and tracking URLs are never printed, stored or written: masked in what
gan-sweep says (errors, progress, a library's own prints, a fault it did not foresee), in what it stores
(a failed trial's reason and traceback) and in the reports, whatever form the password takes."""

import errno
import json
import os
import sys
import types
from pathlib import Path

import forked
import optuna
import pytest
from conftest import MLFLOW, assert_one_line_error, cli, needs_servers, stores, study_file
from optuna.trial import TrialState


@pytest.mark.parametrize("text,hidden,exactly", [
    ("postgresql://u:pa/ss@db:5432/x", "pa/ss", None),            # SQLAlchemy takes a raw '/'
    ("postgresql://u:p@ss@db/x", "p@ss", None),                   # no tail of the password left
    ("postgresql://db/x?user=u&password=hunter22", "hunter22", None),
    ("host=db password=hunter22 dbname=x", "hunter22", None),     # libpq's keyword form, as a driver quotes it
    ("http://u:SECRET@h:5000/api", "SECRET", None),
    ("View run at: http://tok3nSECRET@h:5000/#/experiments/1", "tok3nSECRET",  # a token: userinfo with no colon
     "View run at: http://***@h:5000/#/experiments/1"),
    ("postgresql://postgres@db/x", "nothing-hidden", "postgresql://postgres@db/x"),  # a bare user name is no secret
    pytest.param("postgresql://user:SECRET@db:5432/x and http://a:p%40ss@host:5000 and sqlite:///x.db", "SECRET",
                 "postgresql://user:***@db:5432/x and http://a:***@host:5000 and sqlite:///x.db",
                 id="every-url-of-a-text-and-nothing-but-their-passwords"),
])
def test_mask_hides_passwords_in_every_form(text, hidden, exactly):
    """Each password is gone from a message quoting it; where `exactly` is given, the whole masked text."""
    from sweeps.urls import mask

    masked = mask(f"error at {text}: refused")
    assert hidden not in masked and ("***" in masked) == (hidden != "nothing-hidden"), masked
    if exactly is not None:
        assert mask(text) == exactly


def test_a_password_a_library_quotes_bare_is_hidden_once_its_url_was_given():
    from sweeps import urls

    urls.check("postgresql://u:Bare-Secret-1@db/x", "storage URL", urls.STORAGE_SCHEMES, "x")
    assert urls.mask('FATAL: password "Bare-Secret-1" rejected') == 'FATAL: password "***" rejected'


def test_what_a_library_prints_inside_a_command_is_masked(capsys):
    from sweeps import urls
    from sweeps.masked_io import masked_streams

    urls.remember("http://u:Printed-Secret@h:5000")
    with masked_streams():
        sys.stdout.write("🏃 View run x at: http://u:Printed-Secret@h:5000/#/experiments/1/runs/2\n")
        print("and bare: Printed-Secret", file=sys.stderr)
    out, err = capsys.readouterr()
    assert "Printed-Secret" not in out + err and "http://u:***@h:5000" in out


def test_a_failed_trial_s_stored_reason_and_traceback_are_masked(tmp_path):
    from sweeps.running.runner import fail

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s")
    trial = study.ask()
    ctx = types.SimpleNamespace(handle=types.SimpleNamespace(study=study), tracker=None, outcomes={"FAIL": 0},
                                unrecorded=set(), log=None)
    fail(ctx, trial, None, "ConnectionError: http://u:Stored-Secret@h:5000 refused", "FAILED",
         "Traceback ...\n  postgresql://u:Stored-Secret@db/x\n")
    t = study.trials[0]
    assert t.state == TrialState.FAIL
    assert "Stored-Secret" not in json.dumps(t.user_attrs) and "u:***@h:5000" in t.user_attrs["fail_reason"]


@pytest.mark.parametrize("url,message", [
    ("http://u:pa/ss@127.0.0.1:5000", "must be percent-encoded"),
    ("http://u:p@ss@127.0.0.1:5000", "must be percent-encoded"),
    ("http://[::1:5000", "is malformed"),
    ("http://127.0.0.1:99999999", "is malformed"),
])
def test_a_tracking_url_that_would_leak_or_crash_is_one_line_and_masked(tmp_path, url, message):
    res = cli("run", study_file(tmp_path, lrs=1, seeds=1), "--device", "cpu", "--storage", stores(tmp_path)[0],
              "--tracking-uri", url)
    assert_one_line_error(res.stderr, res.exit_code, message)
    assert "pa/ss" not in res.stderr and "p@ss" not in res.stderr
    assert not (tmp_path / "o.db").exists()


def test_an_unforeseen_fault_is_one_line_masked_and_exit_1(monkeypatch, capsys):
    from sweeps import entry, urls

    urls.remember("postgresql://u:Fault-Secret@db/x")

    def boom(argv):
        raise OSError(errno.ENOSPC, "No space left on device: postgresql://u:Fault-Secret@db/x")

    monkeypatch.setattr("sweeps.cli.main", boom)
    with pytest.raises(SystemExit) as exc:
        entry.main(["run", "smoke"])
    err = capsys.readouterr().err
    assert exc.value.code == 1
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: OSError:") and "Fault-Secret" not in err, err


@pytest.mark.slow
def test_no_password_reaches_stderr_or_the_report(tmp_path, evaluator):
    res = cli("run", study_file(tmp_path, lrs=1, seeds=1), "--device", "cpu",
              "--storage", "postgresql://user:SECRET@127.0.0.1:1/none", "--tracking-uri", stores(tmp_path)[1])
    assert res.exit_code == 2 and "SECRET" not in res.output and "user:***@" in res.stderr
    res = cli("run", study_file(tmp_path, lrs=1, seeds=1), "--device", "cpu", "--storage", stores(tmp_path)[0],
              "--tracking-uri", "http://u:SECRET@127.0.0.1:1")
    assert res.exit_code == 2 and "SECRET" not in res.output
    # a report whose tracking server is gone: the note names it, without the password
    storage, tracking = stores(tmp_path)
    assert cli("run", study_file(tmp_path, lrs=1, seeds=1), "--device", "cpu", "--storage", storage,
               "--tracking-uri", tracking, "--out", tmp_path / "r").exit_code == 0
    res = cli("report", study_file(tmp_path, lrs=1, seeds=1), "--storage", storage,
              "--tracking-uri", "http://u:SECRET@127.0.0.1:1",
              "--out", tmp_path / "r2")
    assert res.exit_code == 0, res.output
    page = (tmp_path / "r2" / "scale-quick" / "report.md").read_text()
    assert "MLflow data unavailable" in page and "SECRET" not in page and "SECRET" not in res.output


@needs_servers
@pytest.mark.parametrize("userinfo,shown", [("user:Http-Secret-9", "user:***@"), ("Http-Secret-9", "http://***@")],
                         ids=["password", "token"])
def test_an_http_tracking_password_is_printed_and_stored_nowhere(tmp_path, userinfo, shown):
    """The loopback server takes no login, so the password (or token) travels and is ignored: what matters
    is where gan-sweep and MLflow would write it (MLflow's own "View run ... at: <URL>" lines included)."""
    url = MLFLOW.replace("http://", f"http://{userinfo}@")
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    proc = forked.run("-m", "sweeps", "run", str(study_file(tmp_path, lrs=1, seeds=1)),
                      "--device", "cpu", "--storage", storage, "--tracking-uri", url, "--out",
                      str(tmp_path / "r"), "--checkpoint-dir", str(tmp_path / "ckpt"),
                      cwd=tmp_path, capture_output=True, text=True, timeout=300,
                      env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Http-Secret-9" not in proc.stdout + proc.stderr and shown in proc.stdout + proc.stderr
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and b"Http-Secret-9" in p.read_bytes()]
    assert not leaks  # the Optuna store, the report, trials.csv, the checkpoints
    server_db = Path(os.environ.get("SERVERS_DIR", "/tmp/gan-sweep-servers")) / "mlflow" / "mlflow.db"
    if server_db.is_file():
        assert b"Http-Secret-9" not in server_db.read_bytes()


def test_bytes_written_through_a_masked_stream_s_buffer_are_masked_too(capfd):
    """click writes bytes to a stream's `buffer`; a password in them is hidden like one in text."""
    import sys

    from sweeps.masked_io import masked_streams

    with masked_streams():
        with pytest.raises(TypeError):
            sys.stdout.write(b"bytes are not text")  # as a real text stream refuses them
        sys.stdout.flush()
        sys.stdout.buffer.write(b"at postgresql://u:Bytes-Secret-1@db/x\n")
        sys.stdout.buffer.flush()
    out = capfd.readouterr().out
    assert "Bytes-Secret-1" not in out and "postgresql://u:***@db/x" in out
