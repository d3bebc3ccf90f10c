"""Runs inside the sandbox child (``python -I -B -S sandbox_boot.py``): limits, guard, then the program.

It is a standalone script (stdlib only, no codefill import) so the child starts fast and the
program under test sees nothing of the harness. Steps:

1. Read and remove the settings from the environment (``CODEFILL_SANDBOX``: ``key=value``
   words, not JSON: importing json costs more than the interpreter's own start).
2. Set resource limits on itself. The limits are set here rather than in a ``preexec_fn``
   because the harness starts children from a thread pool while the engine thread runs, and
   ``preexec_fn`` is documented as unsafe in a process with threads (it can deadlock the child
   between fork and exec).
3. Install an audit hook (PEP 578) that refuses process creation, signals to other processes,
   sockets, ctypes, limit changes, and writes outside the working directory. Every refusal is
   also reported on stderr as ``codefill-sandbox: blocked …``, so a program that catches the
   ``PermissionError`` still fails the task.
4. Execute ``candidate.py`` from the working directory as ``__main__``; on success print the
   token from the settings as the last line of stdout. A program that exits early with status 0
   (``sys.exit(0)``, ``os._exit(0)``) before its test has run therefore does not pass.

Audit hooks are not a security boundary (CPython says so): native code in an extension module
can bypass them. They stop what generated Python code plausibly does by accident; the process
group kill, wall-clock timeout and rlimits in the parent are the backstop.
"""

import os
import resource
import sys

PREFIX = "codefill-sandbox: "
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_BLOCKED = {
    "os.fork": "creating a process", "os.forkpty": "creating a process",
    "os.exec": "starting a program", "os.posix_spawn": "starting a program",
    "os.spawn": "starting a program", "os.system": "starting a program",
    "subprocess.Popen": "starting a program", "pty.spawn": "starting a program",
    "os.kill": "signalling a process", "os.killpg": "signalling a process",
    "signal.pthread_kill": "signalling a thread",
    "socket.__new__": "opening a socket", "socket.connect": "a network connection",
    "socket.bind": "a network bind", "socket.sendto": "a network send",
    "socket.getaddrinfo": "a name lookup", "socket.gethostbyname": "a name lookup",
    "ctypes.dlopen": "loading native code", "ctypes.dlsym": "calling native code",
    "resource.setrlimit": "changing resource limits",
    "resource.prlimit": "changing resource limits",
}
# Modules whose C functions start processes without an audit event of their own (subprocess
# imports _posixsubprocess, so `import subprocess` is refused too).
_BLOCKED_IMPORTS = {"_posixsubprocess": "starting a program"}
# Events whose path arguments must stay inside the working directory.
_PATH_EVENTS = {
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
    "os.chmod": (0,), "os.chown": (0,), "os.link": (0, 1), "os.symlink": (1,),
    "os.truncate": (0,), "os.utime": (0,), "shutil.rmtree": (0,), "shutil.move": (0, 1),
    "shutil.copyfile": (1,), "shutil.copytree": (1,), "os.chflags": (0,), "os.mkfifo": (0,),
    "os.mknod": (0,),
}


def _report(line: str) -> None:
    # os.write on the inherited fd: the program may have replaced sys.stderr.
    try:
        os.write(2, (PREFIX + line.replace("\n", " ")[:500] + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def _limits(cfg: dict) -> None:
    def cap(which: int, value: int) -> None:
        resource.setrlimit(which, (value, value))

    cap(resource.RLIMIT_AS, cfg["memory_bytes"])
    cap(resource.RLIMIT_CPU, cfg["cpu_seconds"])
    cap(resource.RLIMIT_FSIZE, cfg["file_bytes"])
    cap(resource.RLIMIT_CORE, 0)
    try:  # not enforced for root; the fork guard below is what holds there
        cap(resource.RLIMIT_NPROC, cfg["max_processes"])
    except (ValueError, OSError):
        pass


def _guard(root: str) -> None:
    allowed_outside = {os.devnull}

    def inside(path: object) -> bool:
        if isinstance(path, int):  # an already-open descriptor: its open was checked
            return True
        try:
            p = os.fsdecode(path)
        except TypeError:
            return False
        full = os.path.realpath(os.path.join(os.getcwd(), p))
        return full == root or full.startswith(root + os.sep) or full in allowed_outside

    def deny(what: str) -> None:
        _report(f"blocked {what}")
        raise PermissionError(f"codefill sandbox: {what} is not allowed")

    def hook(event: str, args: tuple) -> None:
        why = _BLOCKED.get(event)
        if why is not None:
            deny(f"{why} ({event})")
        if event == "import" and args[0] in _BLOCKED_IMPORTS:
            deny(f"{_BLOCKED_IMPORTS[args[0]]} (import {args[0]})")
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writing and not inside(path):
                deny(f"writing outside the working directory ({os.fsdecode(path)})")
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args) and not inside(args[i]):
                    deny(f"changing a file outside the working directory ({event} "
                         f"{args[i]!r})")

    sys.addaudithook(hook)


def _describe(exc: BaseException) -> str:
    """``Type: message (candidate.py line N)``, N the innermost line of the program itself."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "candidate.py":
            line = tb.tb_lineno
        tb = tb.tb_next
    return text + (f" (candidate.py line {line})" if line else "")


def main() -> None:
    cfg = dict(w.split("=", 1) for w in os.environ.pop("CODEFILL_SANDBOX").split())
    cfg.update((k, int(v)) for k, v in cfg.items() if k != "token")
    _limits(cfg)
    with open("candidate.py", encoding="utf-8") as f:
        source = f.read()
    try:
        code = compile(source, "candidate.py", "exec")
    except (SyntaxError, ValueError) as exc:  # ValueError: NUL bytes in the source
        _report(f"error: {type(exc).__name__}: {exc}")
        os._exit(1)
    _guard(os.path.realpath(os.getcwd()))
    scope = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(code, scope)  # noqa: S102 - running the program under test is the point
    except MemoryError:
        _report(f"error: MemoryError (memory limit {cfg['memory_bytes'] >> 20} MiB)")
        os._exit(1)
    except BaseException as exc:  # noqa: BLE001 - every failure is a reason, SystemExit too
        if isinstance(exc, SystemExit) and exc.code in (None, 0):
            _report("error: the program exited before its test finished (SystemExit)")
        else:
            _report(f"error: {_describe(exc)}")
        os._exit(1)
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a closed stdout just means no token
        pass
    os.write(1, ("\n" + cfg["token"] + "\n").encode())
    os._exit(0)


if __name__ == "__main__":
    main()
