"""The tests' warm-started processes (tests/forked.py) behave as fresh `python -m` / `python -c` ones: the same
output and exit status, their own pid, folder, environment, streams and signal dispositions, and an exit
by the signal they are sent. The process tests (test_scaleout, test_signals, test_stores, test_servers and
test_secrets among them) rely on it."""

import json
import os
import signal
import subprocess
import sys
import time

import forked
import pytest

PROBE = """
import json, os, signal, sys, torch
print(json.dumps(dict(
    cwd=os.getcwd(), argv=sys.argv, x=os.environ.get("GAN_SWEEP_PROBE"), gone="GAN_SWEEP_GONE" in os.environ,
    ppid=os.getppid(), pid=os.getpid(), threads=torch.get_num_threads(), path0=sys.path[0],
    sigint=signal.getsignal(signal.SIGINT) is signal.default_int_handler,
    sigterm=signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, sigpipe=signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN,
    stdin=sys.stdin.read(), main=__name__)))
print("to stderr", file=sys.stderr)
sys.exit(3)
"""


@pytest.mark.parametrize("args", [["--version"], ["run", "no-such-study"], ["run", "smoke", "--storage", "sqlit:///x.db"],
                                  ["report", "smoke", "--storage", "sqlite:///no/such/folder/x.db"]])
def test_a_forked_command_says_and_exits_as_a_fresh_one_would(tmp_path, args):
    said = []
    for fresh in (True, False):
        folder = tmp_path / ("fresh" if fresh else "forked")
        folder.mkdir()
        proc = forked.run("-m", "sweeps", *args, fresh=fresh, cwd=folder, capture_output=True, text=True, timeout=120)
        said.append((proc.returncode, proc.stdout, proc.stderr.replace(str(folder), "<its folder>")))
        assert not list(folder.iterdir())  # a refusal writes nothing, forked or not
    assert said[0] == said[1]
    assert said[0][0] == (0 if args == ["--version"] else 2)


def test_a_forked_process_has_its_own_folder_environment_streams_and_signal_dispositions(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GAN_SWEEP_GONE"} | {"GAN_SWEEP_PROBE": "yes", "OMP_NUM_THREADS": "1"}
    os.environ["GAN_SWEEP_GONE"] = "set in the test process only"
    try:
        proc = forked.spawn("-c", PROBE, "a", "b", cwd=tmp_path, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    finally:
        del os.environ["GAN_SWEEP_GONE"]
    out, err = proc.communicate("from stdin", timeout=120)
    assert proc.returncode == 3 and err == "to stderr\n", err
    seen = json.loads(out)
    assert seen["cwd"] == str(tmp_path) and seen["argv"] == ["-c", "a", "b"] and seen["path0"] == ""
    assert seen["x"] == "yes" and not seen["gone"] and seen["threads"] == 1 and seen["main"] == "__main__"
    assert seen["pid"] == proc.pid != os.getpid() and seen["ppid"] == os.getpid()  # re-parented: waited for here
    assert seen["sigint"] and seen["sigterm"] and seen["sigpipe"] and seen["stdin"] == "from stdin"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_a_forked_process_ends_by_the_signal_it_is_sent_as_a_fresh_one_does(sig):
    code = "import time; print('up', flush=True); time.sleep(120)"
    ends = []
    for fresh in (True, False):
        proc = forked.spawn("-c", code, fresh=fresh, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "up\n"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        ends.append((proc.returncode, err.splitlines()[-1:] if err else []))
    assert ends[0] == ends[1] and ends[0][0] == -sig, ends


def test_a_missing_folder_is_refused_as_popen_refuses_it(tmp_path):
    for fresh in (True, False):
        with pytest.raises(FileNotFoundError):
            forked.spawn("-m", "sweeps", "--version", fresh=fresh, cwd=tmp_path / "missing")


def test_what_a_fork_server_cannot_do_starts_fresh_or_is_refused():
    proc = forked.spawn("-c", "import os; print(os.getpgid(0) == os.getpid())", stdout=subprocess.PIPE, text=True,
                        preexec_fn=os.setpgrp)  # preexec_fn: a fresh process, as subprocess starts it
    assert proc.communicate(timeout=60)[0] == "True\n" and proc.returncode == 0
    with pytest.raises(ValueError, match="cannot take"):
        forked.spawn("-c", "pass", start_new_session=True)
    with pytest.raises(ValueError, match="python -m module"):
        forked.spawn(sys.executable, "x")


@pytest.mark.parametrize("fresh", [False, True])
def test_a_child_still_running_at_its_deadline_fails_the_test_with_its_stacks(fresh):
    from conftest import ended

    proc = forked.spawn("-c", "import time\ndef waiting():\n    time.sleep(60)\nwaiting()", fresh=fresh,
                        env=os.environ | {"PYTHONFAULTHANDLER": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True)
    time.sleep(0.5)  # past its start-up (a forked child is running at once; a fresh one imports nothing heavy)
    with pytest.raises(pytest.fail.Exception) as failed:
        ended(proc, 1)
    assert "still running after 1 s" in str(failed.value) and "in waiting" in str(failed.value), str(failed.value)
