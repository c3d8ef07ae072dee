"""Real `python -m sweeps ...` processes without paying each one's start-up: a warm interpreter (one per
test process) imports torch, MLflow, Optuna and every sweeps and gan_core module once, then forks a child
per command. A child is a process of its own (its own pid, signals, exit status, kill -9, open files)
running the command's real entry point (`sweeps/__main__.py`) with the arguments, folder, environment
and standard streams the test gave; only the 7-9 s of CPU a fresh interpreter spends importing is
skipped. `spawn` returns a `subprocess.Popen`, so tests wait, signal and read it as any other.

What a forked child cannot show, tests still start fresh (`fresh=True`): the start-up itself (Ctrl-C while
torch imports, the torch-free error path, which modules a command imports, a fresh allocator), and
anything needing `preexec_fn` or another program first.

How it works: the test process makes itself a child subreaper (Linux), the warm interpreter forks an
intermediate that forks the command and exits, so the command is re-parented to the test process, which
then waits for it as for its own child (`os.waitpid`, as Popen does). The warm interpreter never runs a
torch operation or starts a Python thread, so forking it is safe."""

from __future__ import annotations

import atexit
import builtins
import ctypes
import faulthandler
import inspect
import io
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

PR_SET_CHILD_SUBREAPER = 36
_PRELOAD = ("torch", "torch._dynamo", "optuna", "optuna.storages", "mlflow", "mlflow.tracking",
            "mlflow.store.tracking.sqlalchemy_store", "sqlalchemy", "sqlalchemy.dialects.sqlite",
            "sqlalchemy.dialects.postgresql", "psycopg", "alembic", "matplotlib", "matplotlib.pyplot",
            "pandas", "scipy.special", "typer", "rich")
_SKIP = {"sweeps.__main__"}  # running it is what a child does


def spawn(how: str, what: str, *args, fresh: bool = False, **popen_kwargs) -> subprocess.Popen:
    """`python -m <module> <args...>` (how="-m") or `python -c <code> <args...>` (how="-c") as a
    `subprocess.Popen` (same keyword arguments). Forked from this test process's warm interpreter unless
    `fresh` (or `preexec_fn` is given, which a fork server cannot run)."""
    if how not in ("-m", "-c"):
        raise ValueError(f"spawn runs `python -m module` or `python -c code`, not {how!r}")
    argv = [sys.executable, how, what, *map(str, args)]
    if fresh or popen_kwargs.get("preexec_fn") or sys.platform != "linux":
        popen_kwargs.setdefault("preexec_fn", _as_typed_at_a_terminal)
        return subprocess.Popen(argv, **popen_kwargs)
    return _ForkedPopen(argv, **popen_kwargs)


def _as_typed_at_a_terminal() -> None:
    """In a fresh child before its exec: SIGINT and SIGQUIT at their defaults, as a command typed at a
    terminal starts (a forked child gets the same in `_child`). A test run a shell started in the background
    (`nohup`, `&` in a script) ignores both and would pass that on, and the command keeps a SIGINT it
    was started ignoring, as a background job should: the Ctrl-C tests could not run."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def run(how: str, what: str, *args, fresh: bool = False, timeout: float | None = None,
        **popen_kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run` for `spawn`: capture_output, text, input and timeout as there."""
    if popen_kwargs.pop("capture_output", False):
        popen_kwargs["stdout"] = popen_kwargs["stderr"] = subprocess.PIPE
    given = popen_kwargs.pop("input", None)
    if given is not None:
        popen_kwargs["stdin"] = subprocess.PIPE
    with spawn(how, what, *args, fresh=fresh, **popen_kwargs) as proc:
        try:
            out, err = proc.communicate(given, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class _ForkedPopen(subprocess.Popen):
    """Popen whose child comes from the warm interpreter instead of fork+exec; every other part of
    Popen (pipes, communicate, wait, signals, the exit status) is Popen's own."""

    def _execute_child(self, *args, **kwargs):
        a = inspect.signature(subprocess.Popen._execute_child).bind(self, *args, **kwargs).arguments
        unsupported = [k for k in ("preexec_fn", "pass_fds", "start_new_session", "process_group", "uid", "gid",
                                   "gids", "umask") if a.get(k) not in (None, (), False, -1)]
        if unsupported or a["shell"] or a["executable"] not in (None, sys.executable):
            raise ValueError(f"a forked process cannot take {unsupported or 'shell or executable'}")
        _, how, what, *rest = a["args"]
        fds = [a["p2cread"] if a["p2cread"] != -1 else 0, a["c2pwrite"] if a["c2pwrite"] != -1 else 1,
               a["errwrite"] if a["errwrite"] != -1 else 2]
        env = dict(os.environ if a["env"] is None else a["env"])
        cwd = os.path.abspath(a["cwd"]) if a["cwd"] is not None else os.getcwd()
        try:
            self.pid = _server().spawn(dict(how=how, what=what, args=rest, cwd=cwd, env=env, parent=os.getpid()), fds)
            self._child_created = True
        finally:
            self._close_pipe_fds(a["p2cread"], a["p2cwrite"], a["c2pread"], a["c2pwrite"], a["errread"],
                                 a["errwrite"])


class _Server:
    """This test process's warm interpreter, over a socket pair."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = mine
        self.proc = subprocess.Popen([sys.executable, __file__, str(theirs.fileno())], pass_fds=[theirs.fileno()])
        theirs.close()
        ready = self.sock.recv(64)
        if ready != b"ready":
            raise RuntimeError(f"the warm interpreter did not start: {ready!r}")
        atexit.register(self.close)

    def spawn(self, request: dict, fds: list[int]) -> int:
        socket.send_fds(self.sock, [json.dumps(request).encode()], fds)
        reply = json.loads(self.sock.recv(1 << 16))
        if "error" in reply:
            raise OSError(reply["errno"], reply["error"], request["cwd"])
        return reply["pid"]

    def close(self) -> None:
        self.sock.close()
        self.proc.wait(timeout=30)


_SERVER: _Server | None = None
_LOCK = threading.Lock()


def _server() -> _Server:
    global _SERVER
    with _LOCK:
        if _SERVER is None or _SERVER.proc.poll() is not None:
            _SERVER = _Server()
        return _SERVER


# -- the warm interpreter ------------------------------------------------------------------------------

def _preload() -> None:
    import importlib
    import pkgutil

    for name in _PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional library: a child that needs it imports it itself
            pass
    for package in ("gan_core", "sweeps"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if info.name not in _SKIP:
                importlib.import_module(info.name)


def _serve(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    _preload()
    # No Python thread runs here. The native ones torch, OpenBLAS and jemalloc start on import are idle pools
    # with their own fork handlers (torch's DataLoader forks such processes every day).
    assert threading.active_count() == 1, threading.enumerate()
    sock.send(b"ready")
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 3)
        if not msg:
            return  # the test process is done
        req = json.loads(msg)
        if not os.path.isdir(req["cwd"]):  # what Popen raises for a missing cwd
            sock.send(json.dumps(dict(error="No such file or directory", errno=2)).encode())
            for f in fds:
                os.close(f)
            continue
        r, w = os.pipe()
        sys.stdout.flush(), sys.stderr.flush()
        middle = os.fork()
        if middle == 0:  # the intermediate: fork the command and leave, so it is re-parented to the test
            try:
                pid = os.fork()
                if pid == 0:
                    os.close(r)
                    os.close(w)
                    sock.close()
                    _child(req, fds)
                os.write(w, str(pid).encode())
            finally:
                os._exit(0)
        os.close(w)
        os.waitpid(middle, 0)
        pid = int(os.read(r, 64))
        os.close(r)
        for f in fds:
            os.close(f)
        sock.send(json.dumps(dict(pid=pid)).encode())


def _child(req: dict, fds: list[int]) -> None:
    """Become `python -m <module> <args>` (or `python -c <code> <args>`) started in `cwd` with `env` and
    the given standard streams."""
    code = 1
    try:
        deadline = time.monotonic() + 10
        while os.getppid() != req["parent"] and time.monotonic() < deadline:  # the intermediate is leaving
            time.sleep(0.001)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in set(fds):
            if fd > 2:
                os.close(fd)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        # a fresh interpreter's signal dispositions
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_IGN)
        if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # what torch would have read at its import
            import torch

            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        _fresh_streams(bool(os.environ.get("PYTHONUNBUFFERED")))
        if os.environ.get("PYTHONFAULTHANDLER"):  # as a fresh interpreter reads it: stacks on SIGABRT, to stderr
            faulthandler.enable(all_threads=True)
        sys.path[0] = os.getcwd() if req["how"] == "-m" else ""  # as `python -m` and `python -c` set it
        try:
            if req["how"] == "-m":
                sys.argv = [req["what"], *req["args"]]
                runpy.run_module(req["what"], run_name="__main__", alter_sys=True)
            else:
                sys.argv = ["-c", *req["args"]]
                main = type(sys)("__main__")
                main.__builtins__ = builtins
                sys.modules["__main__"] = main
                exec(compile(req["what"], "<string>", "exec"), main.__dict__)
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:  # as the interpreter ends on an unhandled interrupt: traceback, killed by SIGINT
            traceback.print_exc()
            _finish()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:  # noqa: BLE001 - what the interpreter prints for an uncaught exception
            traceback.print_exc()
            code = 1
        _finish()
    finally:
        os._exit(code)


def _fresh_streams(unbuffered: bool) -> None:
    """Standard streams as a fresh interpreter opens them (stdout line-buffered on a terminal, stderr
    always; PYTHONUNBUFFERED writes through)."""
    def stream(fd: int, mode: str, errors: str, line: bool):
        raw = io.FileIO(fd, mode, closefd=False)
        if "r" in mode:
            return io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8", errors=errors)
        buffered = raw if unbuffered else io.BufferedWriter(raw)
        return io.TextIOWrapper(buffered, encoding="utf-8", errors=errors, line_buffering=line,
                                write_through=unbuffered)

    sys.stdin = sys.__stdin__ = stream(0, "rb", "strict", False)
    sys.stdout = sys.__stdout__ = stream(1, "wb", "strict", os.isatty(1))
    sys.stderr = sys.__stderr__ = stream(2, "wb", "backslashreplace", True)


def _finish() -> None:
    """What the interpreter does on its way out: join non-daemon threads, run atexit, flush."""
    try:
        threading._shutdown()  # noqa: SLF001 - the interpreter's own step
    except Exception:  # noqa: BLE001
        traceback.print_exc()
    atexit._run_exitfuncs()  # noqa: SLF001
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:  # noqa: BLE001
            pass


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
