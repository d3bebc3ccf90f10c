// Plain node tests (node --test) for the extension's own logic (src/logic.ts).
import { strict as assert } from "node:assert";
import * as path from "node:path";
import { test } from "node:test";
import {
  candidatesOf, EMBEDDED_LABEL, findServer, FindOptions, FOCUS_ACTIVE_MS, FOCUS_REST_MS, FocusTracker, HIDE_INLINE,
  humanBytes, humanParameters, keepShownFirst, languageEnabled, modelPicks, ModelRow, modelSettingTarget,
  pickerPlaceholder, positionAfter, prefillSummary, PULL_CANCELLED_MESSAGE, PullProgress, pullOutcome, refreshAfterAnswer, remoteOf,
  REQUEST_CANCELLED, requeryCommands, RestartPolicy, SERVER_SECTIONS, shownAt, splitModelName, StatusInput,
  statusPollMs, statusView, Streams, toServerSettings, TRIGGER_INLINE, typedThrough,
} from "../src/logic";

function opts(over: Partial<FindOptions>, executables: string[] = []): FindOptions {
  return {
    command: [],
    pythonPath: "",
    defaultInterpreter: "",
    env: { PATH: "/usr/local/bin:/usr/bin" },
    workspaceFolders: [],
    platform: "linux",
    isExecutable: (f: string) => executables.includes(f),
    ...over,
  };
}

test("findServer: an explicit command wins and keeps its arguments", () => {
  const r = findServer(opts({ command: ["/opt/cf/bin/codefill", "serve", "--debug"] }, ["/opt/cf/bin/codefill"]));
  assert.deepEqual(r, { command: "/opt/cf/bin/codefill", args: ["serve", "--debug"], source: "codefill.server.command" });
});

test("findServer: a bare command name is looked up on PATH", () => {
  const r = findServer(opts({ command: ["codefill", "serve"] }, ["/usr/bin/codefill"]));
  assert.deepEqual(r, { command: "/usr/bin/codefill", args: ["serve"], source: "codefill.server.command" });
});

test("findServer: an explicit command that does not exist is an error naming it", () => {
  const r = findServer(opts({ command: ["/nope/codefill", "serve"] }, ["/usr/bin/codefill"]));
  assert.ok("error" in r && r.error.includes("/nope/codefill"), JSON.stringify(r));
});

test("findServer: pythonPath runs the module", () => {
  const r = findServer(opts({ pythonPath: "/env/bin/python" }, ["/env/bin/python", "/usr/bin/codefill"]));
  assert.deepEqual(r, { command: "/env/bin/python", args: ["-m", "lsp_server.cli.main", "serve"],
    source: "codefill.server.pythonPath" });
});

test("findServer: search order is interpreter env, $VIRTUAL_ENV, workspace .venv, PATH", () => {
  const all = ["/py/bin/codefill", "/venv/bin/codefill", "/ws/.venv/bin/codefill", "/usr/bin/codefill"];
  const base = { defaultInterpreter: "/py/bin/python3", env: { VIRTUAL_ENV: "/venv", PATH: "/usr/bin" },
    workspaceFolders: ["/ws"] };
  assert.equal((findServer(opts(base, all)) as { command: string }).command, "/py/bin/codefill");
  assert.equal((findServer(opts(base, all.slice(1))) as { command: string }).command, "/venv/bin/codefill");
  assert.equal((findServer(opts(base, all.slice(2))) as { command: string }).command, "/ws/.venv/bin/codefill");
  const last = findServer(opts(base, all.slice(3)));
  assert.deepEqual(last, { command: "/usr/bin/codefill", args: ["serve"], source: "PATH" });
});

test("findServer: nothing found is an error that says how to fix it", () => {
  const r = findServer(opts({ workspaceFolders: ["/ws"] }));
  assert.ok("error" in r);
  assert.match(r.error, /pip install codefill/);
  assert.match(r.error, /codefill\.server\.command/);
});

test("findServer: Windows layout (Scripts, .exe)", () => {
  const file = path.join("C:\\venv", "Scripts", "codefill.exe");
  const r = findServer(opts({ env: { VIRTUAL_ENV: "C:\\venv", PATH: "" }, platform: "win32" }, [file]));
  assert.equal((r as { command: string }).command, file);
});

test("toServerSettings keeps only the server's sections and copies them", () => {
  const cfg = {
    server: { command: ["x"] }, streaming: true,
    engine: { model: "/m.gguf", threads: 2 }, prompt: { max_tokens: 32 },
    completion: { enabled: true, languages: null }, context: { enabled: false },
  };
  const out = toServerSettings(cfg);
  assert.deepEqual(out, {
    engine: { model: "/m.gguf", threads: 2 }, prompt: { max_tokens: 32 },
    completion: { enabled: true, languages: null }, context: { enabled: false },
  });
  (out.engine as { threads: number }).threads = 9;
  assert.equal(cfg.engine.threads, 2, "a copy, not the same object");
});

test("toServerSettings carries the remote engine settings (codefill.remote.*)", () => {
  assert.ok(SERVER_SECTIONS.includes("remote"));
  const out = toServerSettings({ remote: { url: "http://gpu-box:8080", api: "llama-server", fallback: true },
    streaming: false });
  assert.deepEqual(out, { remote: { url: "http://gpu-box:8080", api: "llama-server", fallback: true } });
});

test("toServerSettings with enabled = false turns completion off", () => {
  assert.deepEqual(toServerSettings({ prompt: { max_tokens: 8 } }, false),
    { prompt: { max_tokens: 8 }, completion: { enabled: false } });
});

test("statusView: error, failed model, off, loading with percent, generating, ready", () => {
  assert.equal(statusView({ enabled: true, generating: false, clientError: "boom" }).kind, "error");
  const failed = statusView({ enabled: true, generating: false, model: "failed", modelError: "no such file" });
  assert.equal(failed.kind, "error");
  assert.match(failed.tooltip, /no such file/);
  assert.equal(statusView({ enabled: false, generating: false, model: "ready" }).kind, "off");
  const loading = statusView({ enabled: true, generating: false, model: "loading", percent: 42.4 });
  assert.equal(loading.kind, "loading");
  assert.match(loading.text, /42%/);
  assert.equal(statusView({ enabled: true, generating: true, model: "ready" }).kind, "generating");
  assert.equal(statusView({ enabled: true, generating: false, model: "ready" }).kind, "ready");
});

test("RestartPolicy allows max restarts within the window, then refuses, and forgets old ones", () => {
  let now = 0;
  const p = new RestartPolicy(2, 1000, () => now);
  assert.equal(p.shouldRestart(), true);
  now = 10;
  assert.equal(p.shouldRestart(), true);
  now = 20;
  assert.equal(p.shouldRestart(), false);
  now = 1500;
  assert.equal(p.shouldRestart(), true, "the first two are outside the window now");
  p.reset();
  assert.equal(p.count, 0);
});

test("Streams: partials only grow, the final answer is authoritative, one stream per document", async () => {
  const s = new Streams("t");
  const key = Streams.key("file:///a.py", 3, 1, 4);
  const { stream } = s.start("file:///a.py", key);
  assert.equal(s.find("file:///a.py", key), stream);
  assert.equal(s.find("file:///a.py", Streams.key("file:///a.py", 4, 1, 4)), undefined);
  assert.equal(s.partial(stream.id, "ret"), stream);
  assert.equal(s.partial(stream.id, "re"), undefined, "shorter partial ignored");
  assert.equal(stream.text, "ret");
  assert.equal(s.inFlight, 1);
  s.finish(stream.id, "return");
  assert.equal(stream.text, "return");
  assert.equal(stream.done, true);
  assert.equal(s.inFlight, 0);
  assert.equal(s.partial(stream.id, "return x"), undefined, "no partials after the end");
  assert.equal(s.find("file:///a.py", key), stream, "a finished stream still answers its key");
  const next = s.start("file:///a.py", Streams.key("file:///a.py", 4, 1, 5));
  assert.equal(next.replaced, stream);
  assert.notEqual(next.stream.id, stream.id);
});

test("candidatesOf: text first, then the other candidates in rank order, no empty or repeated ones", () => {
  assert.deepEqual(candidatesOf("a", undefined), ["a"]);
  assert.deepEqual(candidatesOf("a", ["a"]), ["a"]);
  assert.deepEqual(candidatesOf("a", ["a", "b", "c"]), ["a", "b", "c"]);
  assert.deepEqual(candidatesOf("a", ["b", "a", "c"]), ["a", "b", "c"], "text stays first");
  assert.deepEqual(candidatesOf("a", ["a", "", "b", "b", 3, null, "c"]), ["a", "b", "c"]);
  assert.deepEqual(candidatesOf("", undefined), []);
  assert.deepEqual(candidatesOf(undefined, undefined), []);
  assert.deepEqual(candidatesOf("a", "b"), ["a"], "not a list: ignored");
});

test("keepShownFirst: the candidate that continues the shown ghost text stays first", () => {
  assert.deepEqual(keepShownFirst(["abc", "x", "y"], "ab"), ["abc", "x", "y"]);
  assert.deepEqual(keepShownFirst(["ab", "x"], "abc"), ["ab", "x"], "a shorter final text still fits");
  assert.deepEqual(keepShownFirst(["x", "y", "abc", "z"], "ab"), ["abc", "x", "y", "z"]);
  assert.deepEqual(keepShownFirst(["x", "y"], "ab"), ["x", "y"], "none fits: the server's order");
  assert.deepEqual(keepShownFirst(["x", "abc"], undefined), ["x", "abc"]);
  assert.deepEqual(keepShownFirst(["x", "abc"], ""), ["x", "abc"]);
});

test("Streams: one item while streaming, every candidate once final, the streamed one first", () => {
  const s = new Streams("t");
  const { stream } = s.start("file:///a.py", "k");
  assert.deepEqual(Streams.items(stream), []);
  assert.equal(Streams.stale(stream), false, "nothing shown yet");
  s.partial(stream.id, "fib");
  assert.deepEqual(Streams.items(stream), ["fib"]);
  stream.shown = Streams.items(stream);
  assert.equal(Streams.stale(stream), false);
  s.partial(stream.id, "fibonacci(");
  assert.equal(Streams.stale(stream), true, "the text grew");
  stream.shown = Streams.items(stream);
  s.finish(stream.id, "fibonacci(n - 1)", ["fibonacci(n - 1)", "fib(n)", "n", "fib(n)"]);
  assert.equal(stream.text, "fibonacci(n - 1)");
  assert.deepEqual(stream.candidates, ["fibonacci(n - 1)", "fib(n)", "n"]);
  assert.deepEqual(Streams.items(stream), ["fibonacci(n - 1)", "fib(n)", "n"]);
  assert.equal(Streams.stale(stream), true, "more candidates came: ask VS Code to query again");
  // VS Code queries again (the retrigger, or showNext's explicit trigger): all items, same order.
  stream.shown = Streams.items(stream);
  assert.equal(Streams.stale(stream), false);
  assert.deepEqual(Streams.items(stream), stream.shown);
  assert.equal(s.find("file:///a.py", "k"), stream, "a query after the final answer finds them");
});

test("Streams: a final answer that ranks another candidate first keeps the shown ghost text first", () => {
  const s = new Streams("t");
  const { stream } = s.start("u", "k");
  s.partial(stream.id, "return a");
  stream.shown = Streams.items(stream);
  s.finish(stream.id, "x = 1", ["x = 1", "return a + b", "pass"]);
  assert.deepEqual(Streams.items(stream), ["return a + b", "x = 1", "pass"]);
  assert.equal(stream.text, "return a + b");
  // Not streamed (a cache hit): the server's order as it is.
  const other = s.start("v", "k2").stream;
  s.finish(other.id, "x = 1", ["x = 1", "return a + b"]);
  assert.deepEqual(Streams.items(other), ["x = 1", "return a + b"]);
  assert.equal(Streams.stale(other), false, "nothing was shown");
});

test("Streams: a single answer (no candidates) is one item; an empty one none", () => {
  const s = new Streams("t");
  const a = s.start("u", "k").stream;
  s.finish(a.id, "pass");
  assert.deepEqual(Streams.items(a), ["pass"]);
  const b = s.start("v", "k").stream;
  s.partial(b.id, "re");
  b.shown = Streams.items(b);
  s.finish(b.id, "", undefined);
  assert.deepEqual(Streams.items(b), []);
  assert.equal(Streams.stale(b), true, "the shown ghost text must go");
});

test("Streams.wait resolves on the first partial, on drop, or on timeout", async () => {
  const s = new Streams();
  const a = s.start("u1", "k1").stream;
  const waited = Streams.wait(a, 5000);
  setTimeout(() => s.partial(a.id, "x"), 10);
  await waited;
  assert.equal(a.text, "x");
  const b = s.start("u2", "k2").stream;
  const dropped = Streams.wait(b, 5000);
  setTimeout(() => s.drop("u2"), 10);
  await dropped;
  assert.equal(b.done, true);
  const c = s.start("u3", "k3").stream;
  const t0 = Date.now();
  await Streams.wait(c, 30);
  assert.ok(Date.now() - t0 >= 25);
  assert.equal(c.text, "");
});

test("Streams.wait with untilDone resolves on the final answer only (or on timeout)", async () => {
  const s = new Streams();
  const a = s.start("u1", "k1").stream;
  let resolved = false;
  const waited = Streams.wait(a, 5000, true).then(() => {
    resolved = true;
  });
  s.partial(a.id, "x");
  s.partial(a.id, "xy");
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(resolved, false, "partials do not end the wait");
  s.finish(a.id, "xyz", ["xyz", "w"]);
  await waited;
  assert.equal(resolved, true);
  assert.deepEqual(Streams.items(a), ["xyz", "w"]);
  const b = s.start("u2", "k2").stream;
  s.partial(b.id, "p");
  const t0 = Date.now();
  await Streams.wait(b, 30, true);
  assert.ok(Date.now() - t0 >= 25, "timed out");
  assert.equal(b.done, false);
});

test("Streams.holds: an explicit query of a suggestion shown and still streaming waits for the final answer", () => {
  const s = new Streams();
  const a = s.start("u", "k").stream;
  assert.equal(Streams.holds(a, true), false, "nothing shown yet: answer with the first text");
  s.partial(a.id, "re");
  a.shown = Streams.items(a);
  assert.equal(Streams.holds(a, false), false, "automatic queries answer at once");
  assert.equal(Streams.holds(a, true), true);
  s.finish(a.id, "return", ["return", "pass"]);
  assert.equal(Streams.holds(a, true), false, "done: all candidates at once");
});

test("requeryCommands: a trigger after an automatic query; none while a query waits or the text streams; "
  + "hide and trigger for the final answer after an explicit query", () => {
  const s = new Streams();
  const a = s.start("u", "k").stream;
  s.partial(a.id, "re");
  a.shown = Streams.items(a);
  s.partial(a.id, "retu");
  assert.deepEqual(requeryCommands(a, false), [TRIGGER_INLINE]);
  a.holding = 1;
  assert.deepEqual(requeryCommands(a, false), [], "the waiting query gets the answer");
  assert.deepEqual(requeryCommands(a, true), []);
  a.holding = 0;
  assert.deepEqual(requeryCommands(a, true), [], "no blinking while it streams");
  s.finish(a.id, "return", ["return", "pass"]);
  assert.deepEqual(requeryCommands(a, true), [HIDE_INLINE, TRIGGER_INLINE]);
  assert.deepEqual(requeryCommands(a, false), [TRIGGER_INLINE]);
  a.holding = 1;
  assert.deepEqual(requeryCommands(a, true), []);
});

test("Streams.show and cycle follow the item VS Code shows: a new list starts at its first item", () => {
  const s = new Streams();
  const a = s.start("u", "k", { line: 3, character: 14 }).stream;
  s.partial(a.id, "on");
  Streams.show(a, Streams.items(a));  // an automatic query
  assert.equal(Streams.shownText(a), "on");
  a.holding = 1;  // showNext: VS Code's explicit query waits for the final answer
  Streams.cycle(a, 1, true);
  assert.equal(a.selected, 0);
  s.finish(a.id, "one", ["one", "two", "three"]);
  a.holding = 0;
  Streams.show(a, Streams.items(a));
  assert.equal(Streams.shownText(a), "two", "moved on the items the query got");
  // VS Code has them from an explicit query: it moves at once.
  Streams.cycle(a, 1, true);
  Streams.cycle(a, 1, true);
  assert.equal(Streams.shownText(a), "one", "wraps around");
  Streams.cycle(a, -1, true);
  assert.equal(Streams.shownText(a), "three");
  Streams.show(a, ["one", "two", "three"]);
  assert.equal(Streams.shownText(a), "three", "the same list again: VS Code keeps the item shown");
  Streams.show(a, ["x", "y"]);
  assert.equal(Streams.shownText(a), "x");
  // After an automatic query VS Code asks again first: the move applies to what it gets.
  Streams.cycle(a, 1, false);
  assert.equal(Streams.shownText(a), "x");
  Streams.show(a, ["x", "y"]);
  assert.equal(Streams.shownText(a), "y");
  const b = s.start("v", "k2").stream;
  s.partial(b.id, "p");
  Streams.show(b, Streams.items(b));
  s.finish(b.id, "p1", ["p1", "p2"]);
  Streams.cycle(b, 1, false);
  Streams.show(b, Streams.items(b));
  assert.equal(Streams.shownText(b), "p2", "a new list, then the move");
});

test("positionAfter: on the same line, or on the last line of the inserted text", () => {
  assert.deepEqual(positionAfter({ line: 3, character: 14 }, "abc"), { line: 3, character: 17 });
  assert.deepEqual(positionAfter({ line: 3, character: 14 }, "a\n  b"), { line: 4, character: 3 });
});

test("typedThrough: typing what the candidate shown begins with leaves the rest of it", () => {
  const s = new Streams();
  const a = s.start("u", "k", { line: 3, character: 14 }).stream;
  s.finish(a.id, "onacci(n-1)", ["onacci(n-1)", "onacci(n - 1)"]);
  Streams.show(a, Streams.items(a));
  Streams.cycle(a, 1, true);
  const at = { line: 3, character: 14 };
  const typed = (text: string, start = at, end = at) => typedThrough("u", shownAt(a), [{ range: { start, end }, text }], 7);
  assert.deepEqual(typed("o"), { key: Streams.key("u", 7, 3, 15), at: { line: 3, character: 15 }, text: "nacci(n - 1)" });
  assert.deepEqual(typed("onacci(n "), { key: Streams.key("u", 7, 3, 23), at: { line: 3, character: 23 },
    text: "- 1)" });
  assert.equal(typed("x"), undefined, "not what it begins with");
  assert.equal(typed("onacci(n - 1)"), undefined, "all of it: accepted, nothing left");
  assert.equal(typed("o", { line: 3, character: 13 }, { line: 3, character: 13 }), undefined, "elsewhere");
  assert.equal(typed("o", at, { line: 3, character: 15 }), undefined, "a replacement");
  assert.equal(typedThrough("u", shownAt(a), [], 7), undefined);
  assert.equal(typedThrough("u", undefined, [{ range: { start: at, end: at }, text: "o" }], 7), undefined);
  // A chain: typed again before the next answer came, from what was left.
  const first = typed("o");
  const second = typedThrough("u", first, [{ range: { start: first!.at, end: first!.at }, text: "n" }], 8);
  assert.deepEqual(second, { key: Streams.key("u", 8, 3, 16), at: { line: 3, character: 16 }, text: "acci(n - 1)" });
});

test("Streams: after typing through a candidate, the answer keeps what is left of it first", () => {
  const s = new Streams();
  const a = s.start("u", "k2").stream;
  a.expected = "nacci(n - 1)";
  s.partial(a.id, "nacci(n-");
  assert.deepEqual(Streams.items(a), [], "a text that does not go on with the one shown waits");
  s.partial(a.id, "nacci(n-1)");
  assert.deepEqual(Streams.items(a), []);
  s.finish(a.id, "nacci(n-1)", ["nacci(n-1)", "nacci(n - 1)", "x"]);
  assert.deepEqual(Streams.items(a), ["nacci(n - 1)", "nacci(n-1)", "x"]);
  const b = s.start("v", "k3").stream;
  b.expected = "nacci(n - 1)";
  s.partial(b.id, "nacci");
  assert.deepEqual(Streams.items(b), ["nacci"], "one that fits is offered while it streams");
});

const FAILING = { backend: "llama-server", url: "http://gpu-box:8080", state: "ready" as const,
  remote: { health: "failing", last_error: "cannot reach the remote engine at http://gpu-box:8080: connection refused",
    consecutive_failures: 3, errors: 3, retries: 6, fallbacks: 0 } };

test("remoteOf: undefined for the local engine; backend, url, health and last error of a remote one", () => {
  assert.equal(remoteOf(undefined), undefined);
  assert.equal(remoteOf({ state: "ready", backend: "local" }), undefined);
  assert.equal(remoteOf({ state: "ready" }), undefined, "an older server without backend");
  assert.deepEqual(remoteOf(FAILING), { backend: "llama-server", url: "http://gpu-box:8080", health: "failing",
    lastError: "cannot reach the remote engine at http://gpu-box:8080: connection refused", fallback: false });
  assert.deepEqual(remoteOf({ backend: "openai", url: "http://h", remote: { health: "ok", last_error: null },
    fallback: { state: "ready" } }), { backend: "openai", url: "http://h", health: "ok", lastError: undefined, fallback: true });
  assert.equal(remoteOf({ backend: "remote", url: "http://h" })?.health, "unknown", "while it is being set up");
});

test("statusView: a failing remote engine is a warning naming the error; back to ready when it answers", () => {
  const failing = statusView({ enabled: true, generating: false, model: "ready", remote: remoteOf(FAILING) });
  assert.equal(failing.kind, "warning");
  assert.equal(failing.text, "$(warning) codefill");
  assert.match(failing.tooltip, /^codefill: remote engine failing: cannot reach the remote engine at http:\/\/gpu-box:8080: connection refused; no suggestions/);
  const withFallback = statusView({ enabled: true, generating: true, model: "ready",
    remote: { ...remoteOf(FAILING)!, fallback: true } });
  assert.equal(withFallback.kind, "warning", "failing wins over generating");
  assert.match(withFallback.tooltip, /the local model answers meanwhile/);
  const ok = statusView({ enabled: true, generating: false, model: "ready",
    remote: { backend: "llama-server", url: "http://gpu-box:8080", health: "ok" } });
  assert.equal(ok.kind, "ready");
  assert.match(ok.tooltip, /remote engine llama-server at http:\/\/gpu-box:8080/);
  assert.equal(statusView({ enabled: true, generating: false, model: "ready",
    remote: { backend: "llama-server", health: "unknown" } }).kind, "ready", "no request yet");
  assert.equal(statusView({ enabled: true, generating: false, model: "ready",
    remote: { backend: "remote", url: "http://h:1", health: "unknown" } }).tooltip,
  "codefill: ready (remote engine at http://h:1) (click for status)");
  assert.equal(statusView({ enabled: false, generating: false, model: "ready", remote: remoteOf(FAILING) }).kind, "off");
  assert.equal(statusView({ enabled: true, generating: false, clientError: "x", remote: remoteOf(FAILING) }).kind, "error");
  const connecting = statusView({ enabled: true, generating: false, model: "loading", remote: remoteOf(FAILING) });
  assert.equal(connecting.kind, "loading");
  assert.match(connecting.tooltip, /connecting to the remote engine at http:\/\/gpu-box:8080/);
});

test("statusPollMs: every second while loading, 2 s until the remote is probed, 5 s while it fails, else never", () => {
  const base: StatusInput = { enabled: true, generating: false };
  assert.equal(statusPollMs({ ...base, model: "starting" }), 1000);
  assert.equal(statusPollMs({ ...base, model: "loading" }), 1000);
  assert.equal(statusPollMs({ ...base, model: "ready" }), undefined);
  assert.equal(statusPollMs({ ...base, model: "failed" }), undefined);
  assert.equal(statusPollMs({ ...base, model: "ready", remote: remoteOf(FAILING) }), 5000);
  assert.equal(statusPollMs({ ...base, model: "ready", remote: { backend: "openai", health: "ok" } }), undefined);
  assert.equal(statusPollMs({ ...base, model: "ready", remote: { backend: "remote", health: "unknown" } }), 2000,
    "until the server has probed a remote engine it just switched to");
  assert.equal(statusPollMs({ ...base, clientError: "gone", model: "ready", remote: remoteOf(FAILING) }), undefined);
});

test("refreshAfterAnswer: engine errors at once, remote engines throttled, the local engine never", () => {
  const local: StatusInput = { enabled: true, generating: false, model: "ready" };
  assert.equal(refreshAfterAnswer(local, "engine error: cannot reach", 1500), true);
  assert.equal(refreshAfterAnswer(local, "engine error: cannot reach", 200), false, "at most once a second");
  assert.equal(refreshAfterAnswer(local, "superseded by a newer request", 60_000), false);
  assert.equal(refreshAfterAnswer(local, undefined, 60_000), false);
  const ok: StatusInput = { ...local, remote: { backend: "llama-server", health: "ok" } };
  assert.equal(refreshAfterAnswer(ok, "", 4000), false);
  assert.equal(refreshAfterAnswer(ok, "", 5000), true, "a failing remote behind remote.fallback is noticed");
  const failing: StatusInput = { ...local, remote: remoteOf(FAILING) };
  assert.equal(refreshAfterAnswer(failing, "", 1200), true, "a recovery is noticed while typing");
  assert.equal(refreshAfterAnswer({ ...local, remote: { backend: "openai", health: "unknown" } }, "", 1000), true);
});

// --- the model picker ---------------------------------------------------------------------

function row(name: string, over: Partial<ModelRow> = {}): ModelRow {
  return {
    name,
    title: name,
    parameters: 1_540_000_000,
    license: "apache-2.0",
    gated: false,
    for: "laptops with 8 GB RAM",
    default_quant: "Q8_0",
    recommended: false,
    quantizations: [
      { quant: "Q8_0", size_bytes: 1_650_000_000, pulled: false, path: "", prompt_tps: null, gen_tps: null },
      { quant: "Q4_K_M", size_bytes: 990_000_000, pulled: false, path: "", prompt_tps: null, gen_tps: null },
    ],
    ...over,
  };
}

test("humanBytes and humanParameters", () => {
  assert.equal(humanBytes(1_650_000_000), "1.6 GB");
  assert.equal(humanBytes(521_000_000), "521 MB");
  assert.equal(humanBytes(36_700_000), "37 MB");
  assert.equal(humanBytes(900), "1 kB");
  assert.equal(humanParameters(490_000_000), "490M");
  assert.equal(humanParameters(1_540_000_000), "1.5B");
  assert.equal(humanParameters(2_000_000_000), "2B");
  assert.equal(humanParameters(15_700_000_000), "16B");
});

test("splitModelName: NAME:QUANT, plain names and hf:// references", () => {
  assert.deepEqual(splitModelName("qwen2.5-coder-1.5b:Q4_K_M"), { name: "qwen2.5-coder-1.5b", quant: "Q4_K_M" });
  assert.deepEqual(splitModelName("codegemma-2b"), { name: "codegemma-2b" });
  assert.deepEqual(splitModelName("hf://a/b/c.gguf"), { name: "hf://a/b/c.gguf" });
  assert.deepEqual(splitModelName(""), { name: "" });
});

test("modelPicks: recommended first, one item per model, the embedded default last", () => {
  const picks = modelPicks({
    current: "",
    models: [row("qwen2.5-coder-0.5b"), row("codegemma-2b", { license: "gemma", gated: true }),
      row("qwen2.5-coder-1.5b", { recommended: true })],
  });
  assert.deepEqual(picks.map((p) => p.label),
    ["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "codegemma-2b", EMBEDDED_LABEL]);
  assert.equal(picks[0].description, "$(star-full) recommended · 1.5B · Q8_0 · 1.6 GB · apache-2.0");
  assert.ok(picks[0].recommended && !picks[1].recommended);
  assert.equal(picks[2].description, "1.5B · Q8_0 · 1.6 GB · gemma (gated)");
  assert.equal(picks[1].detail, "for laptops with 8 GB RAM");
  assert.equal(picks[1].value, "qwen2.5-coder-0.5b");
  assert.ok(picks.slice(0, 3).every((p) => !p.pulled && !p.current && p.path === ""));
  // The embedded model is the current one when engine.model is empty.
  const embedded = picks[3];
  assert.equal(embedded.value, "");
  assert.ok(embedded.current && embedded.pulled);
  assert.match(embedded.description, /^\$\(check\) current · /);
});

test("modelPicks: pulled, current with its quantization, expected speed", () => {
  const quants = [
    { quant: "Q8_0", size_bytes: 1_650_000_000, pulled: true, path: "/c/q8.gguf", prompt_tps: 300, gen_tps: 24.5 },
    { quant: "Q4_K_M", size_bytes: 990_000_000, pulled: true, path: "/c/q4.gguf", prompt_tps: 280, gen_tps: 30 },
  ];
  const picks = modelPicks({ current: "qwen2.5-coder-1.5b:Q4_K_M",
    models: [row("codegemma-2b"), row("qwen2.5-coder-1.5b", { quantizations: quants })] });
  const qwen = picks.find((p) => p.label === "qwen2.5-coder-1.5b");
  assert.ok(qwen);
  assert.equal(qwen.value, "qwen2.5-coder-1.5b:Q4_K_M");  // picking it again keeps the setting
  assert.ok(qwen.current && qwen.pulled);
  assert.equal(qwen.path, "/c/q4.gguf");
  assert.equal(qwen.description, "$(check) current · 1.5B · Q4_K_M · 990 MB · apache-2.0 · pulled");
  assert.equal(qwen.detail, "for laptops with 8 GB RAM · expected here: 30 tokens/s generated, prompt 280 tokens/s");
  const embedded = picks.find((p) => p.label === EMBEDDED_LABEL);
  assert.ok(embedded && !embedded.current && !embedded.description.includes("current"));
  assert.ok(!pickerPlaceholder({ current: "qwen2.5-coder-1.5b:Q4_K_M", models: [] }, picks).includes("now:"));
  // A path or hf:// reference is no item: the placeholder names it.
  const other = modelPicks({ current: "/models/x.gguf", models: [row("codegemma-2b")] });
  assert.ok(other.every((p) => !p.current));
  assert.match(pickerPlaceholder({ current: "/models/x.gguf", models: [] }, other), /now: \/models\/x\.gguf/);
});

test("PullProgress: absolute percentages become increments, never backwards, messages pass through", () => {
  const p = new PullProgress();
  assert.deepEqual(p.step({ kind: "begin", percentage: 0, message: "connecting to the hub" }),
    { message: "connecting to the hub" });
  assert.deepEqual(p.step({ kind: "report", percentage: 10, message: "4 of 37 MB" }), { increment: 10, message: "4 of 37 MB" });
  assert.deepEqual(p.step({ kind: "report", percentage: 35, message: "13 of 37 MB" }), { increment: 25, message: "13 of 37 MB" });
  assert.deepEqual(p.step({ kind: "report", percentage: 20 }), undefined);  // never backwards
  assert.deepEqual(p.step({ kind: "report", message: "checking the sha256" }), { message: "checking the sha256" });
  assert.deepEqual(p.step({ kind: "report", percentage: 140 }), { increment: 65 });
  assert.equal(p.percentage, 100);
  assert.equal(p.step({ kind: "end", message: "pulled" }), undefined);
  // A resumed pull starts where the partial file ends: one jump.
  const resumed = new PullProgress();
  resumed.step({ kind: "begin", percentage: 0 });
  assert.deepEqual(resumed.step({ kind: "report", percentage: 42, message: "16 of 37 MB" }), { increment: 42, message: "16 of 37 MB" });
});

test("pullOutcome: cancelled (by the user or the server's RequestCancelled), else the error's first line", () => {
  assert.deepEqual(pullOutcome(new Error("Request got cancelled"), true), { kind: "cancelled", message: PULL_CANCELLED_MESSAGE });
  assert.equal(pullOutcome({ code: REQUEST_CANCELLED, message: "the pull of x was cancelled" }, false).kind, "cancelled");
  assert.match(PULL_CANCELLED_MESSAGE, /pull cancelled; choosing it again resumes/);
  const gated = pullOutcome({ code: -32803, message: "codegemma-2b is gated: accept it at https://hf.co/x\nmore" }, false);
  assert.deepEqual(gated, { kind: "failed", message: "codefill: codegemma-2b is gated: accept it at https://hf.co/x" });
  assert.equal(pullOutcome(new Error("codefill: unknown model 'qwen9'"), false).message, "codefill: unknown model 'qwen9'");
  assert.equal(pullOutcome("boom", false).message, "codefill: boom");
  assert.equal(pullOutcome({}, false).message, "codefill: unknown error");
});

test("modelSettingTarget: the workspace when it sets engine.model, else the user settings", () => {
  assert.equal(modelSettingTarget(undefined), "global");
  assert.equal(modelSettingTarget({}), "global");
  assert.equal(modelSettingTarget({ workspaceValue: "" }), "workspace");
  assert.equal(modelSettingTarget({ workspaceValue: "codegemma-2b" }), "workspace");
});

test("FocusTracker: a cursor at rest is sent only when its line changed for that document", () => {
  const f = new FocusTracker();
  assert.equal(f.shouldSend("file:///a.py", 0, "rest"), true, "first look at a document");
  assert.equal(f.shouldSend("file:///a.py", 0, "rest"), false, "same document, same line");
  assert.equal(f.shouldSend("file:///a.py", 3, "rest"), true, "another line");
  assert.equal(f.shouldSend("file:///a.py", 3, "rest"), false, "another column of the same line");
  assert.equal(f.shouldSend("file:///b.py", 3, "rest"), true, "the same line of another document");
  // Back in a.py on the line sent for it last: nothing new for a cursor at rest.
  assert.equal(f.shouldSend("file:///a.py", 3, "rest"), false);
});

test("FocusTracker: an editor that becomes active is sent unless it is the position sent last", () => {
  const f = new FocusTracker();
  assert.equal(f.shouldSend("file:///a.py", 5, "active"), true, "the editor active at start");
  assert.equal(f.shouldSend("file:///a.py", 5, "active"), false, "the same position again (a split of it)");
  assert.equal(f.shouldSend("file:///b.py", 0, "active"), true, "another editor");
  // Back to a.py on its old line: the server last saw b.py, so it hears of a.py again.
  assert.equal(f.shouldSend("file:///a.py", 5, "active"), true);
  assert.equal(f.shouldSend("file:///a.py", 5, "rest"), false, "then resting there sends nothing");
});

test("FocusTracker: forget (document closed) and reset (a new server) send again", () => {
  const f = new FocusTracker();
  assert.equal(f.shouldSend("file:///a.py", 2, "rest"), true);
  f.forget("file:///a.py");
  assert.equal(f.shouldSend("file:///a.py", 2, "rest"), true, "after close");
  assert.equal(f.shouldSend("file:///a.py", 2, "active"), false);
  f.reset();
  assert.equal(f.shouldSend("file:///a.py", 2, "active"), true, "after a restart");
  assert.equal(f.shouldSend("file:///a.py", 2, "rest"), false);
  assert.ok(FOCUS_ACTIVE_MS < FOCUS_REST_MS && FOCUS_REST_MS >= 200 && FOCUS_REST_MS <= 500);
});

test("languageEnabled reads completion.languages as the server does", () => {
  assert.equal(languageEnabled(null, "python"), true);
  assert.equal(languageEnabled(undefined, "python"), true);
  assert.equal(languageEnabled({}, "python"), true);
  assert.equal(languageEnabled({ markdown: false }, "python"), true);
  assert.equal(languageEnabled({ markdown: false }, "markdown"), false);
  assert.equal(languageEnabled({ "*": false, python: true }, "python"), true);
  assert.equal(languageEnabled({ "*": false, python: true }, "go"), false);
  assert.equal(languageEnabled({ "*": false }, "toString"), false, "no inherited properties");
});

test("prefillSummary: focus and done first, other numbers after, nothing without counters", () => {
  assert.equal(prefillSummary(undefined), undefined);
  assert.equal(prefillSummary(null), undefined);
  assert.equal(prefillSummary({}), undefined);
  assert.equal(prefillSummary({ done: 2, skipped_same_line: 4, focus: 7, state: "idle" }),
    "prefill: focus 7, done 2, skipped same line 4");
  assert.equal(prefillSummary({ focus: 1 }), "prefill: focus 1");
  assert.equal(prefillSummary({ focus: 1, last_ms: 12.6 }), "prefill: focus 1, last ms 13");
});
