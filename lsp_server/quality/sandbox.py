"""Execute untrusted generated programs: one subprocess per program, bounded and isolated.

What bounds a program (see :mod:`.sandbox_boot` for the child's side):

* wall clock: the parent waits ``timeout_s`` and then kills the child's whole process group
  (the child is a session leader, so anything it managed to start dies with it);
* CPU time, address space (memory), size of any file written (stdout/stderr included), core
  dumps: ``setrlimit`` in the child before the program runs;
* no network, no processes, no writes outside its own temporary directory: an audit hook in the
  child (a guard against accidents, not a hardened jail; see the limits in sandbox_boot);
* environment: ``python -I -B -S`` (the standard library only: no site-packages, which also
  makes the interpreter start 8× faster; no PYTHON* variables; no bytecode written), a
  fresh temporary working directory that is HOME and TMPDIR and is removed afterwards, and no
  variables of ours except PATH and the locale.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BOOT = Path(__file__).resolve().with_name("sandbox_boot.py")
PREFIX = "codefill-sandbox: "
TAIL_BYTES = 8192


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    """Wall-clock limit per program, interpreter start included."""
    memory_mb: int = 1024
    """Address-space limit (RLIMIT_AS); a bigger allocation raises MemoryError."""
    file_mb: int = 16
    """Largest file the program may write, its stdout and stderr included (RLIMIT_FSIZE)."""
    max_processes: int = 512
    """RLIMIT_NPROC for non-root users (the kernel ignores it for root; the audit hook refuses
    fork there)."""


@dataclass(frozen=True)
class ExecResult:
    status: str
    """'passed', 'failed', 'timeout' or 'blocked' (the sandbox refused an operation)."""
    reason: str
    """Why it did not pass, one line; empty when it passed."""
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _tail(f) -> str:  # noqa: ANN001 - a binary file object
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - TAIL_BYTES))
    return f.read().decode("utf-8", "replace")


def _wait_unreaped(proc: subprocess.Popen, deadline: float) -> bool:
    """Wait until the child exits or the deadline passes, without reaping it: while it is a
    zombie its pid cannot be reused, so killing its process group afterwards cannot hit an
    unrelated process. True when it exited."""
    delay = 0.001
    while True:
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        if info is not None:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.005)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _classify(returncode: int, timed_out: bool, out: str, err: str, token: str,
              limits: Limits) -> tuple[str, str]:
    lines = [ln[len(PREFIX):] for ln in err.splitlines() if ln.startswith(PREFIX)]
    blocked = [ln for ln in lines if ln.startswith("blocked ")]
    if timed_out:
        return "timeout", f"timed out after {limits.timeout_s:g} s (process group killed)"
    if blocked:
        return "blocked", f"sandbox {blocked[0]}"
    if returncode < 0:
        sig = -returncode
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        why = {signal.SIGXCPU: "CPU time limit", signal.SIGXFSZ:
               f"file size limit ({limits.file_mb} MiB, output included)"}.get(sig, "killed")
        return "failed", f"{why} ({name})"
    if returncode == 0:
        if out.rstrip("\n").rsplit("\n", 1)[-1] == token:
            return "passed", ""
        return "failed", "the program exited before its test finished"
    errors = [ln[len("error: "):] for ln in lines if ln.startswith("error: ")]
    if errors:
        return "failed", errors[-1]
    last = next((ln for ln in reversed(err.splitlines()) if ln.strip()), "")
    return "failed", f"exit status {returncode}" + (f": {last[:300]}" if last else "")


def run_program(source: str, limits: Limits = Limits()) -> ExecResult:
    """Run ``source`` as ``__main__`` in a fresh sandboxed interpreter; never raises for
    anything the program does."""
    t0 = time.monotonic()
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="codefill-exec-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        (work / "candidate.py").write_text(source, encoding="utf-8")
        cfg = {"token": token, "memory_bytes": limits.memory_mb << 20,
               "file_bytes": limits.file_mb << 20, "max_processes": limits.max_processes,
               # CPU limit a little above the wall limit: the wall clock normally fires first.
               "cpu_seconds": int(limits.timeout_s) + 2}
        env = {"PATH": os.defpath, "HOME": str(work), "TMPDIR": str(work),
               "LANG": "C.UTF-8",
               "CODEFILL_SANDBOX": " ".join(f"{k}={v}" for k, v in cfg.items())}
        # stdout/stderr go to files outside the working directory (bounded by RLIMIT_FSIZE);
        # pipes could fill up or be held open by a stray grandchild.
        with open(Path(tmp) / "stdout", "w+b") as out, open(Path(tmp) / "stderr", "w+b") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-S", str(BOOT)], cwd=work, env=env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
                close_fds=True)
            try:
                exited = _wait_unreaped(proc, t0 + limits.timeout_s)
            finally:
                _kill_group(proc.pid)  # leftovers on success, everything on timeout
                returncode = proc.wait()
            status, reason = _classify(returncode, not exited, _tail(out), _tail(err), token,
                                       limits)
    return ExecResult(status=status, reason=reason, seconds=time.monotonic() - t0)
