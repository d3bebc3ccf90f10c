// What the end-to-end scenarios share: starting code-server (VS Code in a browser) with the
// extension installed in a fresh user data dir, headless Chromium on it (playwright-core),
// waiting helpers, the codefill status bar item, the command palette, codefill: Show Status, and
// stopping it all.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { chromium } from "playwright-core";

export const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) {
    throw new Error(`${name} is not set`);
  }
  return v;
};

/** Timings since the start (`mark`), and a log line on stderr with the elapsed time. */
export function clock() {
  const t0 = Date.now();
  const timings = {};
  return {
    timings,
    mark: (name) => { timings[name] = (Date.now() - t0) / 1000; },
    log: (msg) => process.stderr.write(`[e2e ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`),
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

export async function waitHttp(url, timeoutMs) {
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
    await sleep(250);
  }
}

/** Poll fn (sync or async) until it returns a truthy value. */
export async function waitFor(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) {
      return v;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await sleep(200);
  }
}

/** The codefill status bar item's icon ("check", "warning", "error", …) and its aria label. */
export function statusIcon(page) {
  return page.evaluate(() => {
    const el = [...document.querySelectorAll(".statusbar-item")].find((e) => e.textContent?.includes("codefill"));
    const icon = el?.querySelector("[class*='codicon-']");
    const cls = icon ? [...icon.classList].find((c) => c.startsWith("codicon-") && c !== "codicon-modifier-spin") : "";
    return { icon: cls ? cls.slice("codicon-".length) : "",
      label: el?.getAttribute("aria-label") || el?.querySelector("[aria-label]")?.getAttribute("aria-label") || "" };
  });
}

export async function waitStatusIcon(page, icon, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await statusIcon(page);
    if (st.icon === icon) {
      return st;
    }
    if (Date.now() > deadline) {
      throw new Error(`the status bar did not show ${icon} within ${timeoutMs} ms (it shows ${JSON.stringify(st)})`);
    }
    await sleep(250);
  }
}

/** Wait until the server has answered what typing asked: at least `minMs`, and the status bar
 * not "generating" for the last second. */
export async function waitAnswered(page, minMs, timeoutMs) {
  const start = Date.now();
  let quietSince = Date.now();
  for (;;) {
    const busy = (await statusIcon(page)).icon !== "check";
    if (busy) {
      quietSince = Date.now();
    }
    if (Date.now() - start >= minMs && Date.now() - quietSince >= 1000) {
      return;
    }
    if (Date.now() - start > timeoutMs) {
      throw new Error(`the status bar stayed busy for ${timeoutMs} ms`);
    }
    await sleep(100);
  }
}

/** User settings for a test run: no telemetry, updates or experiments; ghost text on. */
export function userSettings(serverCmd, extra = {}) {
  return {
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
    "codefill.server.command": serverCmd,
    ...extra,
  };
}

/**
 * A fresh VS Code: the extension installed into a scratch user data dir and extensions dir,
 * code-server on a free port (its own process group), Chromium on the workspace. Returns the
 * handles; `stopVSCode` ends them. `vscode.settingsFile` is the user settings.json.
 */
/** Start code-server with the extension and open the workspace in Chromium. ``vscode`` (the
 * caller's object) receives each part as it starts, so that stopVSCode(vscode) cleans up
 * whatever started, also when this fails half-way. */
export async function startVSCode({ codeServer, vsix, workspace, chromiumPath, settings, mark, log }, vscode = {}) {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "codefill-vscode-e2e-"));
  const userData = path.join(scratch, "user-data");
  const extensions = path.join(scratch, "extensions");
  const settingsFile = path.join(userData, "User", "settings.json");
  fs.mkdirSync(path.dirname(settingsFile), { recursive: true });
  fs.writeFileSync(settingsFile, JSON.stringify(settings, null, 2));
  Object.assign(vscode, { scratch, userData, settingsFile, serverLog: [], proc: undefined, browser: undefined,
    page: undefined });
  const install = spawnSync(codeServer, ["--install-extension", vsix, "--force",
    "--extensions-dir", extensions, "--user-data-dir", userData], { encoding: "utf8", timeout: 300_000 });
  if (install.status !== 0) {
    throw new Error(`--install-extension failed (${install.status}): ${install.stdout}${install.stderr}`);
  }
  mark("installed");
  const port = await freePort();
  vscode.proc = spawn(codeServer, ["--bind-addr", `127.0.0.1:${port}`, "--auth", "none",
    "--user-data-dir", userData, "--extensions-dir", extensions, "--disable-telemetry",
    "--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override",
    workspace], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  vscode.proc.stdout.on("data", (d) => vscode.serverLog.push(String(d)));
  vscode.proc.stderr.on("data", (d) => vscode.serverLog.push(String(d)));
  await waitHttp(`http://127.0.0.1:${port}/healthz`, 120_000);
  mark("code-server up");
  vscode.browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  vscode.page = await vscode.browser.newPage({ viewport: { width: 1280, height: 800 } });
  vscode.page.setDefaultTimeout(120_000);
  await vscode.page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(workspace)}`);
  await vscode.page.waitForSelector(".monaco-workbench", { timeout: 180_000 });
  mark("workbench");
  log("workbench loaded");
  return vscode;
}

/** Close the browser and code-server's whole process group (file watchers, the LSP server). */
export async function stopVSCode(vscode) {
  if (!vscode) {
    return;
  }
  if (vscode.browser) {
    await vscode.browser.close().catch(() => {});
  }
  if (vscode.proc && vscode.proc.pid) {
    try {
      process.kill(-vscode.proc.pid, "SIGTERM");
    } catch {
      // already gone
    }
    await sleep(1000);
    try {
      process.kill(-vscode.proc.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  if (vscode.scratch) {
    fs.rmSync(vscode.scratch, { recursive: true, force: true });
  }
}

/** Open a workspace file with Quick Open and wait for `text` in the editor. */
export async function openFile(page, name, text) {
  await page.keyboard.press("Control+P");
  await page.waitForSelector(".quick-input-widget input");
  await page.keyboard.type(name, { delay: 30 });
  await page.waitForSelector(".quick-input-list .monaco-list-row");
  await page.keyboard.press("Enter");
  await page.waitForSelector(`.monaco-editor .view-lines:has-text('${text}')`);
}

/** Run a command by its palette title (e.g. "codefill: Show Status"). */
export async function runCommand(page, title) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input").first();
  await input.waitFor({ state: "visible" });
  await input.fill(`>${title}`);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first().waitFor();
  await page.keyboard.press("Enter");
}

/** The texts of the visible notification toasts, whitespace collapsed. */
export function toastTexts(page) {
  return page.evaluate(() => [...document.querySelectorAll(".notifications-toasts .notification-list-item")]
    .map((e) => (e.textContent ?? "").replace(/\s+/g, " ").trim()));
}

/** The ghost text pieces shown now (spans whose class contains ghost-text, non-empty). */
export function ghostTexts(page) {
  return page.evaluate(() => [...document.querySelectorAll("[class*='ghost-text']")]
    .map((e) => (e.textContent ?? "").replace(/\u00a0/g, " ")).filter((t) => t.length > 0));
}

/** The ghost text on the cursor line: VS Code renders it as one span per syntax token (each with
 * the ghost-text-decoration class), so the line is the pieces joined in document order. */
export function ghostInline(page) {
  return page.evaluate(() => [...document.querySelectorAll("[class*='ghost-text-decoration']")]
    .filter((e) => !e.parentElement?.closest("[class*='ghost-text-decoration']"))
    .map((e) => (e.textContent ?? "").replace(/\u00a0/g, " ")).join(""));
}

/** The inline suggestion toolbar's "1/3" (which item is shown, of how many), or "" when it shows
 * none (it needs `editor.inlineSuggest.showToolbar: "always"`, and VS Code counts the items only
 * after an explicit trigger). */
export function suggestionCount(page) {
  return page.evaluate(() => [...document.querySelectorAll(".inlineSuggestionsHints .availableSuggestionCount")]
    .map((e) => (e.textContent ?? "").trim()).find((t) => t.length > 0) ?? "");
}

/** The message of codefill: Show Status (the server's codefill/status); the toast is cleared. */
export async function showStatus(page, timeoutMs = 30_000) {
  await runCommand(page, "codefill: Show Status");
  const text = await waitFor(async () => (await toastTexts(page)).find((t) => /codefill \S+: model /.test(t)),
    timeoutMs, "the message of codefill: Show Status");
  await runCommand(page, "Notifications: Clear All Notifications");
  return text;
}


/** Go to the end of ``line`` (1-based) with Ctrl+G and type ``text`` as a user does; returns when
 * the last key was typed (Date.now()). */
export async function typeAtLineEnd(page, line, text) {
  await page.keyboard.press("Control+G");
  await page.waitForSelector(".quick-input-widget input");
  await page.keyboard.type(String(line), { delay: 30 });
  await page.keyboard.press("Enter");
  await page.keyboard.press("End");
  await page.keyboard.type(text, { delay: 120 });
  return Date.now();
}


/** startVSCode with what the test passes in the environment: CODE_SERVER, VSIX, WORKSPACE,
 * SERVER_CMD (a JSON argv) and CHROMIUM (default /usr/bin/chromium); `settings`: more user
 * settings. */
export function startVSCodeFromEnv({ mark, log, settings = {} }, vscode) {
  return startVSCode({ codeServer: env("CODE_SERVER"), vsix: env("VSIX"), workspace: env("WORKSPACE"),
    chromiumPath: env("CHROMIUM", "/usr/bin/chromium"),
    settings: userSettings(JSON.parse(env("SERVER_CMD")), settings), mark, log }, vscode);
}
