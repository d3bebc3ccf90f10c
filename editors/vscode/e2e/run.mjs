// End-to-end test of the extension in a real VS Code: code-server (VS Code in a browser) in
// headless Chromium driven by playwright-core, with the real `codefill serve` and its model.
// Opens fib.py of a fixture workspace, types, waits for the ghost text, takes a screenshot,
// accepts with Tab, saves, and checks the file on disk; then points codefill.remote.url at a port
// where nothing listens (in the Settings editor, no restart: the status bar must warn that the
// remote engine is failing) and starts a stand-in llama-server there (the status bar must go
// back to ready); then kills the server until the client gives up (bounded restarts) and checks
// that typing still works. Prints one JSON line.
//
// Environment: CODE_SERVER (code-server binary), VSIX, WORKSPACE (a copy of the fixture),
// SERVER_CMD (JSON list for codefill.server.command), SCREENSHOT (PNG path),
// GHOST_TIMEOUT_MS (default 120000), CHROMIUM (default /usr/bin/chromium).
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) {
    throw new Error(`${name} is not set`);
  }
  return v;
};
const CODE_SERVER = env("CODE_SERVER");
const VSIX = env("VSIX");
const WORKSPACE = env("WORKSPACE");
const SERVER_CMD = JSON.parse(env("SERVER_CMD"));
const SCREENSHOT = env("SCREENSHOT");
const GHOST_TIMEOUT_MS = Number(env("GHOST_TIMEOUT_MS", "120000"));
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");

const t0 = Date.now();
const timings = {};
const mark = (name) => { timings[name] = (Date.now() - t0) / 1000; };
const log = (msg) => process.stderr.write(`[e2e ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

async function waitHttp(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.ok) {
        return;
      }
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      throw new Error(`code-server did not answer ${url} within ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Poll fn until it returns a truthy value. */
async function waitFor(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) {
      return v;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The codefill status bar item's icon ("check", "warning", "error", …) and its aria label. */
function statusIcon(page) {
  return page.evaluate(() => {
    const el = [...document.querySelectorAll(".statusbar-item")].find((e) => e.textContent?.includes("codefill"));
    const icon = el?.querySelector("[class*='codicon-']");
    const cls = icon ? [...icon.classList].find((c) => c.startsWith("codicon-") && c !== "codicon-modifier-spin") : "";
    return { icon: cls ? cls.slice("codicon-".length) : "",
      label: el?.getAttribute("aria-label") || el?.querySelector("[aria-label]")?.getAttribute("aria-label") || "" };
  });
}

async function waitStatusIcon(page, icon, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await statusIcon(page);
    if (st.icon === icon) {
      return st;
    }
    if (Date.now() > deadline) {
      throw new Error(`the status bar did not show ${icon} within ${timeoutMs} ms (it shows ${JSON.stringify(st)})`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A stand-in for llama-server: /props, and one non-streamed /infill answer to every request. */
function fakeLlamaServer(port) {
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const body = req.url === "/props" ? { default_generation_settings: { n_ctx: 4096 } }
        : { content: " = 1", stop: true, stop_type: "eos" };
      res.writeHead(200, { "Content-Type": "application/json", Connection: "close" });
      res.end(JSON.stringify(body));
      fakeLlamaServer.requests += 1;
    });
  });
  return new Promise((resolve, reject) => {
    srv.on("error", reject);
    srv.listen(port, "127.0.0.1", () => resolve(srv));
  });
}
fakeLlamaServer.requests = 0;

/** PIDs of `codefill serve` processes in code-server's process group (started by the extension). */
function serverPids(pgid) {
  const pids = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    try {
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8");
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const pgrp = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
      if (pgrp === pgid && /(lsp_server\.cli\.main|bin\/codefill)\0serve/.test(cmd)) {
        pids.push(Number(entry));
      }
    } catch {
      // the process is gone
    }
  }
  return pids;
}

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "codefill-vscode-e2e-"));
const userData = path.join(scratch, "user-data");
const extensions = path.join(scratch, "extensions");
fs.mkdirSync(path.join(userData, "User"), { recursive: true });
fs.writeFileSync(path.join(userData, "User", "settings.json"), JSON.stringify({
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "extensions.autoUpdate": false,
  "extensions.autoCheckUpdates": false,
  "workbench.enableExperiments": false,
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "security.workspace.trust.enabled": false,
  "editor.inlineSuggest.enabled": true,
  // Keep the suggest widget out of the way: Tab must go to the inline suggestion.
  "editor.quickSuggestions": { other: "off", comments: "off", strings: "off" },
  "editor.suggestOnTriggerCharacters": false,
  "editor.wordBasedSuggestions": "off",
  "files.autoSave": "off",
  "codefill.server.command": SERVER_CMD,
}, null, 2));

let codeServer;
let browser;
let engine;
const result = { ok: false };
try {
  const install = spawnSync(CODE_SERVER, ["--install-extension", VSIX, "--force",
    "--extensions-dir", extensions, "--user-data-dir", userData], { encoding: "utf8", timeout: 300_000 });
  if (install.status !== 0) {
    throw new Error(`--install-extension failed (${install.status}): ${install.stdout}${install.stderr}`);
  }
  mark("installed");
  const port = await freePort();
  codeServer = spawn(CODE_SERVER, ["--bind-addr", `127.0.0.1:${port}`, "--auth", "none",
    "--user-data-dir", userData, "--extensions-dir", extensions, "--disable-telemetry",
    "--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override",
    WORKSPACE], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const serverLog = [];
  codeServer.stdout.on("data", (d) => serverLog.push(String(d)));
  codeServer.stderr.on("data", (d) => serverLog.push(String(d)));
  result.codeServerLog = serverLog;
  await waitHttp(`http://127.0.0.1:${port}/healthz`, 120_000);
  mark("code-server up");
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(120_000);
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(WORKSPACE)}`);
  await page.waitForSelector(".monaco-workbench", { timeout: 180_000 });
  mark("workbench");
  log("workbench loaded");
  // Open fib.py with Quick Open.
  await page.waitForTimeout(1500);
  await page.keyboard.press("Control+P");
  await page.waitForSelector(".quick-input-widget input");
  await page.keyboard.type("fib.py", { delay: 30 });
  await page.waitForSelector(".quick-input-list .monaco-list-row");
  await page.keyboard.press("Enter");
  await page.waitForSelector(".monaco-editor .view-lines:has-text('fibonacci')");
  mark("file open");
  log("fib.py open");
  // The status bar item shows the model state; wait for ready (a check icon).
  const item = page.locator("[id*='codefill'].statusbar-item, .statusbar-item:has-text('codefill')").first();
  await item.waitFor({ timeout: 120_000 });
  result.statusStart = (await item.getAttribute("aria-label")) ?? (await item.innerText());
  await page.waitForFunction(() => {
    const el = [...document.querySelectorAll(".statusbar-item")].find((e) => e.textContent?.includes("codefill"));
    return el && el.querySelector(".codicon-check");
  }, null, { timeout: GHOST_TIMEOUT_MS });
  mark("model ready");
  log("status bar: ready");
  // Line 4 is "    return "; go to its end and type.
  await page.click(".monaco-editor .view-lines");
  await page.keyboard.press("Control+G");
  await page.waitForSelector(".quick-input-widget input");
  await page.keyboard.type("4", { delay: 30 });
  await page.keyboard.press("Enter");
  await page.keyboard.press("End");
  await page.keyboard.type("fib", { delay: 120 });
  const typedAt = Date.now();
  const ghost = page.locator("[class*='ghost-text']").first();
  await ghost.waitFor({ state: "visible", timeout: GHOST_TIMEOUT_MS });
  await page.waitForFunction(() => [...document.querySelectorAll("[class*='ghost-text']")]
    .some((e) => (e.textContent ?? "").trim().length > 0), null, { timeout: GHOST_TIMEOUT_MS });
  result.ghostLatencyS = (Date.now() - typedAt) / 1000;
  mark("ghost text");
  // Let a streamed suggestion settle (it may still grow), then read and photograph it.
  await page.waitForTimeout(1500);
  result.ghost = await page.evaluate(() => [...document.querySelectorAll("[class*='ghost-text']")]
    .map((e) => (e.textContent ?? "").replace(/\u00a0/g, " ")).filter((t) => t.length > 0));
  // The cursor line's ghost text: VS Code renders it as one span per syntax token (each with the
  // ghost-text-decoration class), so the line is the pieces joined in document order.
  result.ghostInline = await page.evaluate(() => [...document.querySelectorAll("[class*='ghost-text-decoration']")]
    .filter((e) => !e.parentElement?.closest("[class*='ghost-text-decoration']"))
    .map((e) => (e.textContent ?? "").replace(/\u00a0/g, " ")).join(""));
  log(`ghost text: ${JSON.stringify(result.ghost)}; cursor line: ${JSON.stringify(result.ghostInline)}`);
  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT });
  result.screenshot = SCREENSHOT;
  await page.keyboard.press("Tab");
  await page.waitForTimeout(500);
  await page.keyboard.press("Escape");
  await page.keyboard.press("Control+S");
  const file = path.join(WORKSPACE, "fib.py");
  const deadline = Date.now() + 30_000;
  let text = fs.readFileSync(file, "utf8");
  while (!text.split("\n")[3].startsWith("    return fib") && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    text = fs.readFileSync(file, "utf8");
  }
  mark("saved");
  result.fileText = text;

  // A remote engine that does not answer: codefill.remote.url is set in the Settings editor
  // (VS Code applies it without a restart; the server switches engines), the status bar warns.
  const enginePort = await freePort();
  await page.keyboard.press("Control+Comma");
  if (!await page.waitForSelector(".settings-editor", { timeout: 10_000 }).catch(() => null)) {
    await page.keyboard.press("F1");
    await page.waitForSelector(".quick-input-widget input");
    await page.keyboard.type("Preferences: Open Settings (UI)", { delay: 20 });
    await page.keyboard.press("Enter");
    await page.waitForSelector(".settings-editor");
  }
  await page.waitForTimeout(1500);
  await page.keyboard.type("codefill.remote.url", { delay: 20 });
  const urlInput = page.locator('[data-key="codefill.remote.url"] .setting-item-control input').first();
  await urlInput.waitFor({ timeout: 30_000 });
  await urlInput.click();
  await urlInput.fill(`http://127.0.0.1:${enginePort}`);
  await page.keyboard.press("Tab");
  mark("remote url set");
  const failing = await waitStatusIcon(page, "warning", 90_000);
  result.remoteWarning = failing.label;
  mark("remote failing shown");
  log(`status bar: ${failing.label}`);
  // Back to fib.py through its editor tab (quick open from the Settings editor proved flaky
  // on a loaded machine: its list stayed hidden).
  await page.click('.tabs-container .tab:has-text("fib.py")');
  await page.waitForSelector(".monaco-editor .view-lines:has-text('fibonacci')");
  // The engine comes up; the next suggestion request reaches it and the status bar follows.
  engine = await fakeLlamaServer(enginePort);
  await page.click(".monaco-editor .view-lines:has-text('fibonacci')");
  await page.keyboard.press("Control+End");
  await page.keyboard.press("Enter");
  await page.keyboard.type("y", { delay: 30 });
  const recovered = await waitStatusIcon(page, "check", 60_000);
  result.remoteRecovered = recovered.label;
  result.remoteRequests = fakeLlamaServer.requests;
  mark("remote recovered");
  log(`status bar: ${recovered.label}`);
  await page.keyboard.press("Escape");
  await page.keyboard.press("Backspace");

  // Bad input: the server crashes. Kill it (SIGKILL) each time the client has restarted it;
  // after codefill.server.maxRestarts (3) restarts the client must give up, show the error in
  // the status bar and a message, and typing must keep working.
  const killed = [];
  for (let i = 0; i < 4; i++) {
    const pid = await waitFor(() => serverPids(codeServer.pid).find((p) => !killed.includes(p)), 90_000,
      `a codefill server process (start ${i + 1})`);
    await new Promise((r) => setTimeout(r, 1500)); // let it get through initialize
    process.kill(pid, "SIGKILL");
    killed.push(pid);
    log(`killed server ${pid} (${i + 1}/4)`);
  }
  result.killed = killed.length;
  await page.waitForFunction(() => {
    const el = [...document.querySelectorAll(".statusbar-item")].find((e) => e.textContent?.includes("codefill"));
    return el && el.querySelector(".codicon-error");
  }, null, { timeout: 60_000 });
  mark("crash error shown");
  const toast = page.locator(".notifications-toasts .notification-list-item-message",
    { hasText: "not restarted again" }).first();
  await toast.waitFor({ timeout: 60_000 });
  result.crashMessage = (await toast.innerText()).replace(/\s+/g, " ");
  log(`after crashes: ${result.crashMessage}`);
  await new Promise((r) => setTimeout(r, 3000));
  result.serversAfterGivingUp = serverPids(codeServer.pid).length;
  await page.click(".monaco-editor .view-lines:has-text('fibonacci')");
  await page.keyboard.press("Control+End");
  await page.keyboard.type("# still typing", { delay: 30 });
  await page.keyboard.press("Control+S");
  const deadline2 = Date.now() + 30_000;
  while (!fs.readFileSync(file, "utf8").includes("# still typing") && Date.now() < deadline2) {
    await new Promise((r) => setTimeout(r, 200));
  }
  result.fileAfterCrash = fs.readFileSync(file, "utf8");
  mark("typed after crash");
  result.ok = true;
} catch (err) {
  result.error = err instanceof Error ? `${err.message}\n${err.stack}` : String(err);
  try {
    const pages = browser ? browser.contexts().flatMap((c) => c.pages()) : [];
    if (pages[0]) {
      await pages[0].screenshot({ path: SCREENSHOT.replace(/\.png$/, "-failure.png") });
      result.failureScreenshot = SCREENSHOT.replace(/\.png$/, "-failure.png");
    }
  } catch {
    // no screenshot
  }
} finally {
  result.timings = timings;
  if (browser) {
    await browser.close().catch(() => {});
  }
  if (engine) {
    engine.close();
  }
  if (codeServer && codeServer.pid) {
    try {
      process.kill(-codeServer.pid, "SIGTERM"); // the whole group: file watchers, the LSP server
    } catch {
      // already gone
    }
    await new Promise((r) => setTimeout(r, 1000));
    try {
      process.kill(-codeServer.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  if (result.ok) {
    result.codeServerLog = undefined;
  } else if (result.codeServerLog) {
    result.codeServerLog = result.codeServerLog.join("").slice(-4000);
  }
  fs.rmSync(scratch, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(result.ok ? 0 : 1);
}
