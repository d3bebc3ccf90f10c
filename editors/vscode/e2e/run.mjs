// End-to-end test of the extension in a real VS Code: code-server (VS Code in a browser) in
// headless Chromium driven by playwright-core, with the real `codefill serve` and its model.
// Opens fib.py of a fixture workspace; checks that the server hears where the user is looking
// (codefill/didFocus, counted in Show Status: the cursor resting on another line adds one, a move
// on the same line none); types, waits for the ghost text, takes a screenshot,
// accepts with Tab, saves, and checks the file on disk; then points codefill.remote.url at a port
// where nothing listens (in the Settings editor, no restart: the status bar must warn that the
// remote engine is failing) and starts a stand-in llama-server there (the status bar must go
// back to ready); then kills the server until the client gives up (bounded restarts) and checks
// that typing still works. Prints one JSON line.
//
// Environment: CODE_SERVER (code-server binary), VSIX, WORKSPACE (a copy of the fixture),
// SERVER_CMD (JSON list for codefill.server.command), SCREENSHOT (PNG path),
// GHOST_TIMEOUT_MS (default 120000), CHROMIUM (default /usr/bin/chromium).
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import {
  clock, env, freePort, ghostInline, openFile, showStatus, sleep, startVSCodeFromEnv, stopVSCode, typeAtLineEnd,
  waitAnswered, waitFor, waitStatusIcon,
} from "./common.mjs";

const WORKSPACE = env("WORKSPACE");
const SCREENSHOT = env("SCREENSHOT");
const GHOST_TIMEOUT_MS = Number(env("GHOST_TIMEOUT_MS", "120000"));

const { timings, mark, log } = clock();

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

const vscode = {};
let engine;
const result = { ok: false };
try {
  await startVSCodeFromEnv({ mark, log }, vscode);
  const codeServer = vscode.proc;
  const page = vscode.page;
  // Open fib.py with Quick Open.
  await page.waitForTimeout(1500);
  await openFile(page, "fib.py", "fibonacci");
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
  // Where the user is looking: the server counts codefill/didFocus (Show Status: "prefill: focus
  // N"). The editor active at start was told already; the cursor resting on line 2 adds one; a
  // move on the same line adds none.
  const focusCount = async () => {
    const text = await showStatus(page);
    const m = /prefill: focus (\d+)/.exec(text);
    if (!m) {
      throw new Error(`no prefill counters in codefill: Show Status: ${text}`);
    }
    return Number(m[1]);
  };
  await sleep(800);
  result.focusAtStart = await focusCount();
  await page.keyboard.press("Control+G");
  await page.waitForSelector(".quick-input-widget input");
  await page.keyboard.type("2", { delay: 30 });
  await page.keyboard.press("Enter");
  await sleep(800); // past the 300 ms rest
  result.focusAfterMove = await focusCount();
  await page.keyboard.press("End");
  await sleep(800);
  result.focusAfterSameLine = await focusCount();
  mark("focus counted");
  log(`prefill focus: ${result.focusAtStart} at start, ${result.focusAfterMove} after a move to line 2, `
    + `${result.focusAfterSameLine} after a move on that line`);
  // Line 4 is "    return "; go to its end and type.
  await page.click(".monaco-editor .view-lines");
  const typedAt = await typeAtLineEnd(page, 4, "fib");
  const ghost = page.locator("[class*='ghost-text']").first();
  await ghost.waitFor({ state: "visible", timeout: GHOST_TIMEOUT_MS });
  await page.waitForFunction(() => [...document.querySelectorAll("[class*='ghost-text']")]
    .some((e) => (e.textContent ?? "").trim().length > 0), null, { timeout: GHOST_TIMEOUT_MS });
  result.ghostLatencyS = (Date.now() - typedAt) / 1000;
  mark("ghost text");
  // Let the streamed suggestion settle, then read and photograph it: it may still grow, and with
  // several candidates the final answer comes after they are ranked (seconds on a loaded
  // machine); Tab accepts the final one. The status bar is busy until then.
  await waitAnswered(page, 1500, GHOST_TIMEOUT_MS);
  await waitFor(async () => {
    const before = await ghostInline(page);
    await sleep(700);
    return before.trim() && before === await ghostInline(page);
  }, 30_000, "the ghost text to stop changing");
  result.ghost = await page.evaluate(() => [...document.querySelectorAll("[class*='ghost-text']")]
    .map((e) => (e.textContent ?? "").replace(/\u00a0/g, " ")).filter((t) => t.length > 0));
  result.ghostInline = await ghostInline(page);
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
    await sleep(1500); // let it get through initialize
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
    if (vscode?.page) {
      await vscode.page.screenshot({ path: SCREENSHOT.replace(/\.png$/, "-failure.png") });
      result.failureScreenshot = SCREENSHOT.replace(/\.png$/, "-failure.png");
    }
  } catch {
    // no screenshot
  }
} finally {
  result.timings = timings;
  if (engine) {
    engine.close();
  }
  if (!result.ok && vscode) {
    result.codeServerLog = (vscode.serverLog ?? []).join("").slice(-4000);
  }
  await stopVSCode(vscode);
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(result.ok ? 0 : 1);
}
