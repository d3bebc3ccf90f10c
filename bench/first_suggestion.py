"""The first suggestion after opening a file or switching to one, through the real server.

    .venv/bin/python bench/first_suggestion.py [--model PATH] [--rounds 1] [--switches 6]
        [--pause 2] [--switch-pause 1] [--files 3] [--modes today,prefill,floor]
        [--json bench-first.json]
    .venv/bin/python bench/first_suggestion.py --files 2 --switches 2   # quick check

The workspace is a temporary copy of the installed ``llama_cpp`` package's sources (its
``lib/`` binaries left out), so the repository context that its imports pull into each prompt
is real. The three largest of its modules with at least 2,000 lines are edited (the run stops
if there are fewer). In each, the cursor goes to the first line at or after 3/4 of the file
that is a whole one-line statement inside a function body (no docstring, ``...`` or ``pass``,
no trailing comment), at its end.

Each mode runs in a fresh ``codefill serve`` (the embedded model unless ``--model``; default
settings except ``prompt.max_tokens`` 24 and the mode's own, given both as initialization
options and as workspace configuration):

- today: ``completion.prefill`` off, ``engine.prompt_states`` 0, ``engine.cold_share`` 0 —
  what the server did before prefill, kept prompt states and short cold prompts;
- prefill: the defaults;
- floor: the defaults and ``completion.cache`` off; every request is asked a second time at
  the same cursor once the engine is idle, and the second one is the sample: its prompt is all
  in the KV cache but the token it must evaluate to sample from, so it is what generating the
  suggestion costs through the server (debounce and context selection included).

Measured, the same files and lines in every mode:

- open → first: per file, one after another, ``didOpen``, then ``codefill/didFocus`` at the
  chosen cursor (a jump to that line), ``--pause`` seconds of reading, then an inline completion
  request there; request → answer latency, whether the answer was empty and why
  (``completion.last_empty_reason``), and the time from the open to the answer;
- switch → first: after the open phase, in the same server, the files are cycled (A, B, C, A,
  …, ``--switches`` in all): each switch is a ``codefill/didFocus`` at the file's cursor (an
  editor tab becoming active), ``--switch-pause`` seconds, then one typed character (a space
  appended at the cursor, ``didChange``) and a request at the new end of the line. The edit is
  what keeps the suggestion cache (on in today and prefill, as shipped) from answering a place
  it has answered before; a request that was answered from a cache anyway is counted. The
  switch's focus lands on the line last completed in that file, which the server does not
  prefill again: what a switch finds is what ``engine.prompt_states`` kept.

``--rounds N`` repeats the open phase with fresh servers (3 files × N samples per mode); the
switch phase runs in the first round. p50/p95 are nearest-rank over every request, empty answers
included (an empty answer is a wait that showed nothing); below 20 samples p95 is the slowest.

Output: a markdown table on stdout (p50, p95 and empty answers per phase and mode, the ratios
prefill / floor and prefill / today of each p50 and p95), the largest memory the kept prompt
states took, and with ``--json PATH`` every request (latency, text, reason, the engine counters
it moved), the status at the end of each mode, the machine (CPU, cores, load average before and
after) and the date.

About 3–4 minutes on a quiet 2-core machine with the defaults (3 servers, 3 opens and 6
switches each); run it on a quiet machine: on a busy one the numbers mean nothing.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, Harness  # noqa: E402

MIN_LINES = 2000
MAX_TOKENS = 24
TYPING_GAP_S = 1.6
"""Pause before asking again at the same cursor: longer than the server's typing gap
(completion/debounce.py), so that the repeat gets the same debounce as a first request."""

MODES: dict[str, dict[str, Any]] = {
    "today": {"completion": {"prefill": False},
              "engine": {"prompt_states": 0, "cold_share": 0}},
    "prefill": {},
    "floor": {"completion": {"cache": False}},
}


# --- workspace ---------------------------------------------------------------------------
def package_dir() -> Path:
    import importlib.util
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.origin:
        raise SystemExit("the llama_cpp package is not installed in this interpreter")
    return Path(spec.origin).parent


def copy_workspace(dest: Path) -> Path:
    """The package's Python sources under ``dest``/llama_cpp; returns the copy."""
    src = package_dir()
    target = dest / src.name

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n in ("lib", "__pycache__")
                or (os.path.isfile(os.path.join(folder, n))
                    and not n.endswith((".py", ".pyi", ".typed")))]
    shutil.copytree(src, target, ignore=ignore)
    return target


def utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def pick_line(text: str) -> int:
    """The first line at or after 3/4 of ``text`` holding a whole one-line statement inside a
    function body (not a docstring, ``...`` or ``pass``, no trailing comment); failing that,
    the first non-blank line there that is not a comment, decorator, def or class."""
    lines = text.split("\n")
    start = (3 * len(lines)) // 4
    found: set[int] = set()
    for fn in ast.walk(ast.parse(text)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if node is fn or not isinstance(node, ast.stmt) or hasattr(node, "body"):
                continue
            if isinstance(node, ast.Pass) or (isinstance(node, ast.Expr)
                                              and isinstance(node.value, ast.Constant)):
                continue
            if node.lineno != node.end_lineno:
                continue
            raw = lines[node.lineno - 1].encode()  # ast offsets are UTF-8 byte offsets
            if node.col_offset == len(raw) - len(raw.lstrip()) and \
                    node.end_col_offset == len(raw.rstrip()):
                found.add(node.lineno - 1)
    after = sorted(i for i in found if i >= start)
    if after:
        return after[0]
    for i in range(start, len(lines)):
        s = lines[i].strip()
        if s and not s.startswith(("#", "@", "def ", "async def ", "class ")):
            return i
    raise SystemExit("no code line after 3/4 of a module")


@dataclass
class Target:
    path: Path
    text: str
    lines: int
    line: int

    @property
    def name(self) -> str:
        return self.path.name


def choose_targets(pkg: Path, n: int) -> list[Target]:
    sized = []
    for p in sorted(pkg.glob("*.py")):
        text = p.read_text(encoding="utf-8")
        sized.append((len(text.splitlines()), p, text))
    big = [s for s in sized if s[0] >= MIN_LINES]
    if len(big) < n:
        raise SystemExit(f"{pkg}: {len(big)} modules with ≥ {MIN_LINES} lines "
                         f"({', '.join(f'{p.name} {c}' for c, p, _ in sized)}); need {n}")
    big = sorted(big, key=lambda s: (-s[0], s[1].name))[:n]
    return [Target(p, text, count, pick_line(text))
            for count, p, text in sorted(big, key=lambda s: s[1].name)]


# --- measuring ---------------------------------------------------------------------------
@dataclass
class Sample:
    mode: str
    round: int
    phase: str
    """"open" or "switch"; in floor mode "open-first"/"switch-first" are the first asks."""
    file: str
    line: int
    character: int
    latency_s: float
    text: str
    empty: bool
    reason: str = ""
    open_to_answer_s: float | None = None
    cached: bool = False
    """Answered from the suggestion cache or an in-flight generation, not by a new model call."""
    tries: int = 1
    sent_monotonic: float = 0.0
    engine: dict[str, float] = field(default_factory=dict)
    """How much each engine counter moved during the request (background work included)."""
    short_prompts: int = 0


@dataclass
class ModeRun:
    mode: str
    settings: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    status: list[dict[str, Any]] = field(default_factory=list)
    """The server's codefill/status at the end of each round."""
    state_bytes: int = 0
    state_capacity: int | None = None


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in a.items()}
    for k, v in b.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def focus(h: Harness, uri: str, line: int, character: int) -> None:
    assert h.client is not None
    h.call(h.client.protocol.notify, "codefill/didFocus",
           {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}})


def engine_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    a, b = after["model"].get("engine") or {}, before["model"].get("engine") or {}
    return {k: round(a[k] - b.get(k, 0), 4) for k in a if isinstance(a[k], (int, float))
            and a[k] != b.get(k, 0)}


def foreground_evaluated(delta: dict[str, float]) -> float:
    """Prompt tokens evaluated by requests (not by background prefills) in ``delta``."""
    return delta.get("evaluated_tokens", 0) - delta.get("prefill_tokens", 0)


class Session:
    """One fresh server for one mode and round."""

    def __init__(self, root: Path, run: ModeRun, rnd: int) -> None:
        self.run, self.rnd = run, rnd
        self.h = Harness(root, init_options=run.settings, settings=run.settings)
        self.uris: dict[str, str] = {}
        self.ends: dict[str, int] = {}  # file → the cursor's column (UTF-16) on its line

    def start(self) -> None:
        self.h.start()  # waits for the model
        deadline = time.monotonic() + 120
        while self.h.status()["context"].get("state") not in ("ready", "off", "failed"):
            if time.monotonic() > deadline:
                raise SystemExit("the workspace index did not finish: "
                                 f"{self.h.status()['context']}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.h.client is None:  # never started
            self.h.loop.call_soon_threadsafe(self.h.loop.stop)
            return
        try:
            st = self.h.status()
            self.note_states(st)
            self.run.status.append(st)
        except Exception as exc:  # noqa: BLE001 - still stop the server
            print(f"codefill/status failed: {exc}", file=sys.stderr)
        finally:
            self.h.stop()

    def note_states(self, st: dict[str, Any]) -> None:
        ps = st["model"].get("prompt_states") or {}
        self.run.state_bytes = max(self.run.state_bytes, ps.get("bytes", 0))
        self.run.state_capacity = ps.get("capacity", self.run.state_capacity)

    def ask(self, t: Target, phase: str, char: int) -> tuple[Sample, dict[str, Any]]:
        """One inline completion request at (t.line, char), with what it moved."""
        before = self.h.status()
        t0 = time.monotonic()
        text = self.h.inline(self.uris[t.name], t.line, char) or ""
        latency = time.monotonic() - t0
        time.sleep(0.05)  # a generation the pipeline stopped early reaches the counters
        after = self.h.status()
        self.note_states(after)
        c0, c1 = before["completion"]["counters"], after["completion"]["counters"]
        cached = (c1["model_calls"] == c0["model_calls"]) and bool(text)
        s = Sample(self.run.mode, self.rnd, phase, t.name, t.line, char, latency, text,
                   not text, "" if text else after["completion"].get("last_empty_reason", ""),
                   cached=cached, sent_monotonic=t0, engine=engine_delta(before, after),
                   short_prompts=after["model"].get("short_prompts", 0)
                   - before["model"].get("short_prompts", 0))
        return s, after

    def wait_background(self, since: dict[str, Any], jobs: int, timeout: float = 60) -> None:
        """Until ``jobs`` background requests queued before ``since`` have ended."""
        if jobs <= 0:
            return
        e0 = since["model"].get("engine") or {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            e = self.h.status()["model"].get("engine") or {}
            if (e.get("prefills", 0) + e.get("preempted", 0)
                    - e0.get("prefills", 0) - e0.get("preempted", 0)) >= jobs:
                return
            time.sleep(0.1)

    def measure(self, t: Target, phase: str, char: int) -> Sample:
        """A request; in floor mode asked again at the same cursor once its prompt is in the
        cache (up to 3 tries), the repeat being the sample."""
        first, after = self.ask(t, phase, char)
        if self.run.mode != "floor":
            return first
        first.phase = f"{phase}-first"
        self.run.samples.append(first)
        sample = first
        for tries in range(1, 4):
            # A short (cold) answer leaves the full prompt filling in the background.
            self.wait_background(after, sample.short_prompts)
            time.sleep(TYPING_GAP_S)
            sample, after = self.ask(t, phase, char)
            sample.tries = tries
            if foreground_evaluated(sample.engine) <= 2 and not sample.short_prompts:
                break
        return sample

    def open_phase(self, targets: list[Target], pause: float) -> None:
        for t in targets:
            t0 = time.monotonic()
            uri = self.uris[t.name] = self.h.open(t.path, t.text)
            line = t.text.split("\n")[t.line]
            self.ends[t.name] = utf16_len(line)
            focus(self.h, uri, t.line, self.ends[t.name])
            time.sleep(pause)
            s = self.measure(t, "open", self.ends[t.name])
            if self.run.mode != "floor":
                s.open_to_answer_s = s.sent_monotonic + s.latency_s - t0
            self.run.samples.append(s)

    def switch_phase(self, targets: list[Target], switches: int, pause: float) -> None:
        for i in range(switches):
            t = targets[i % len(targets)]
            uri, end = self.uris[t.name], self.ends[t.name]
            focus(self.h, uri, t.line, end)
            time.sleep(pause)
            self.h.change(uri, (t.line, end), (t.line, end), " ")
            self.ends[t.name] = end + 1
            self.run.samples.append(self.measure(t, "switch", end + 1))


# --- report ------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable,
            "platform": platform.platform(), "python": platform.python_version()}


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def ms(x: float) -> str:
    return "–" if x != x else f"{x * 1000:.0f} ms"


def ratio(a: float, b: float) -> str:
    return "–" if a != a or b != b or not b else f"{a / b:.2f}"


def report(runs: dict[str, ModeRun], targets: list[Target], args: argparse.Namespace,
           load: tuple[tuple[float, ...], tuple[float, ...]], info: dict[str, Any]) -> None:
    def of(mode: str, phase: str) -> list[Sample]:
        r = runs.get(mode)
        return [s for s in r.samples if s.phase == phase] if r else []

    names = list(runs)
    files = ", ".join(f"{t.name} ({t.lines} lines, cursor line {t.line + 1})" for t in targets)
    print(f"first suggestion, {info['model']}: {files}; "
          f"{args.rounds} round(s), {args.switches} switches, pause {args.pause:g} s / "
          f"{args.switch_pause:g} s, max_tokens {args.max_tokens}\n")
    head = "| | " + " | ".join(names)
    seps = "| --- | " + " | ".join("---:" for _ in names)
    extra = [(a, b) for a, b in (("prefill", "floor"), ("prefill", "today"))
             if a in runs and b in runs]
    print(head + "".join(f" | {a} / {b}" for a, b in extra) + " |")
    print(seps + "".join(" | ---:" for _ in extra) + " |")
    for phase, label in (("open", "open → first"), ("switch", "switch → first")):
        for q, qn in ((.5, "p50"), (.95, "p95")):
            vals = {m: pct([s.latency_s for s in of(m, phase)], q) for m in names}
            print(f"| {label} {qn} | " + " | ".join(ms(vals[m]) for m in names)
                  + "".join(f" | {ratio(vals[a], vals[b])}" for a, b in extra) + " |")
        print(f"| {label} empty | " + " | ".join(
            f"{sum(s.empty for s in of(m, phase))} of {len(of(m, phase))}" for m in names)
              + "".join(" | " for _ in extra) + " |")
    opened = {m: [s.open_to_answer_s for s in of(m, "open") if s.open_to_answer_s is not None]
              for m in names}
    print("| open → answer p50 (pause included) | " + " | ".join(
        ms(pct(opened[m], .5)) for m in names) + "".join(" | " for _ in extra) + " |")

    print()
    for m, r in runs.items():
        st = r.status[0] if r.status else {}
        pf = st.get("prefill", {})
        model = st.get("model", {})
        eng = model.get("engine") or {}
        cached = sum(s.cached for s in r.samples)
        print(f"- {m}: kept prompt states up to {r.state_bytes / 2**20:.0f} MiB "
              f"(capacity {r.state_capacity}); prefill focus {pf.get('focus')}, scheduled "
              f"{pf.get('scheduled')}, done {pf.get('done')}, preempted {pf.get('preempted')}, "
              f"skipped {pf.get('skipped')}; short prompts {model.get('short_prompts')}"
              f"; restored states {eng.get('restored_states')}"
              + (f"; {cached} answers from the suggestion cache" if cached else ""))
        reasons = sorted({s.reason for s in r.samples
                          if s.empty and s.reason and s.phase in ("open", "switch")})
        if reasons:
            print(f"  empty because: {'; '.join(reasons)}")
        if m == "floor":
            cold = [s for s in r.samples if s.phase in ("open", "switch")
                    and foreground_evaluated(s.engine) > 2]
            if cold:
                print(f"  {len(cold)} floor samples still evaluated prompt tokens")
    cores = info["machine"]["usable_cores"] or 1
    print(f"\n{info['machine']['cpu']}, {cores} cores; load average before "
          f"{load[0][0]:.2f}, after {load[1][0]:.2f}"
          + (" — a busy machine: these numbers are not meaningful" if max(load[0][0], load[1][0])
             > 0.5 * cores else ""))


# --- main --------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="GGUF path or registry name (default: the "
                                                "embedded model)")
    ap.add_argument("--rounds", type=int, default=1, help="open phases, each in fresh servers")
    ap.add_argument("--switches", type=int, default=6)
    ap.add_argument("--pause", type=float, default=2.0, help="seconds between focus and request "
                                                             "after an open")
    ap.add_argument("--switch-pause", type=float, default=1.0)
    ap.add_argument("--files", type=int, default=3, choices=(1, 2, 3))
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of "
                                                             + ", ".join(MODES))
    ap.add_argument("--max-tokens", type=int, default=MAX_TOKENS)
    ap.add_argument("--json", default="", help="write every request and the servers' status")
    args = ap.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        ap.error(f"--modes: a subset of {', '.join(MODES)}")
    if args.rounds < 1 or args.switches < 0:
        ap.error("--rounds ≥ 1, --switches ≥ 0")
    if args.files < 2 and args.switches:
        print("one file: no switches", file=sys.stderr)

    base: dict[str, Any] = {"prompt": {"max_tokens": args.max_tokens}}
    if args.model:
        base["engine"] = {"model": args.model}
    runs = {m: ModeRun(m, merge(base, MODES[m])) for m in modes}
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="codefill-first-") as tmp:
        root = Path(tmp)
        pkg = copy_workspace(root)
        targets = choose_targets(pkg, args.files)
        for rnd in range(args.rounds):
            for m in modes:
                s = Session(root, runs[m], rnd)
                try:
                    s.start()
                    s.open_phase(targets, args.pause)
                    if rnd == 0 and args.switches and len(targets) > 1:
                        s.switch_phase(targets, args.switches, args.switch_pause)
                finally:
                    s.stop()
                print(f"[{m}, round {rnd + 1}: done at {time.monotonic() - t_start:.0f} s]",
                      file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    first_status = next((r.status[0] for r in runs.values() if r.status), {})
    info = {"machine": machine(), "model": Path(str(first_status.get("model", {}).get(
        "model", "?"))).name}
    report(runs, targets, args, (load_before, load_after), info)
    print(f"\n{time.monotonic() - t_start:.0f} s in all")
    if args.json:
        out = {
            "date": started.isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - t_start, 1),
            "revision": git_rev(),
            "args": vars(args),
            "machine": {**info["machine"], "load_before": load_before, "load_after": load_after},
            "model": info["model"],
            "files": [{"file": t.name, "lines": t.lines, "line": t.line,
                       "text": t.text.split("\n")[t.line]} for t in targets],
            "modes": {m: {"settings": r.settings, "samples": [asdict(s) for s in r.samples],
                          "state_bytes_max": r.state_bytes, "state_capacity": r.state_capacity,
                          "status": r.status} for m, r in runs.items()},
        }
        Path(args.json).write_text(json.dumps(out, indent=1, default=str) + "\n")
        print(f"json: {args.json}")


if __name__ == "__main__":
    main()
