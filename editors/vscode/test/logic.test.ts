// Plain node tests (node --test) for the extension's own logic (src/logic.ts).
import { strict as assert } from "node:assert";
import * as path from "node:path";
import { test } from "node:test";
import {
  findServer, FindOptions, refreshAfterAnswer, remoteOf, RestartPolicy, SERVER_SECTIONS, StatusInput, statusPollMs,
  statusView, Streams, toServerSettings,
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
