// End-to-end test of "codefill: Choose Model" in a real VS Code (code-server in headless
// Chromium), with the real `codefill serve` pulling from a local stand-in for the Hugging Face
// hub (tests/fake_hub.py; HF_ENDPOINT, XDG_CACHE_HOME and HF_HOME come from the environment).
// Picks MODEL in the picker, cancels the pull in its progress notification once CANCEL_AFTER_MB
// have arrived (the partial file must stop growing and the setting stay unset), picks it again
// (the pull resumes and finishes), checks codefill.engine.model in the user settings.json, waits
// until the server reports the model loaded (codefill: Show Status), and types until ghost text
// from it appears. Prints one JSON line.
//
// Environment: CODE_SERVER, VSIX, WORKSPACE (a copy of the fixture), SERVER_CMD (JSON list for
// codefill.server.command), SCREENSHOT (PNG path), XDG_CACHE_HOME (the server's cache: pulled
// models go to $XDG_CACHE_HOME/codefill/hub), MODEL (default codegemma-2b), TEMPLATE (its FIM
// template, default codegemma), CANCEL_AFTER_MB (default 4), GHOST_TIMEOUT_MS (default 120000),
// CHROMIUM (default /usr/bin/chromium).
import * as fs from "node:fs";
import * as path from "node:path";
import {
  clock, env, ghostTexts, openFile, runCommand, sleep, startVSCodeFromEnv, stopVSCode, typeAtLineEnd, toastTexts, waitFor,
  waitStatusIcon,
} from "./common.mjs";

const SCREENSHOT = env("SCREENSHOT");
const STORE = path.join(env("XDG_CACHE_HOME"), "codefill", "hub");
const MODEL = env("MODEL", "codegemma-2b");
const TEMPLATE = env("TEMPLATE", "codegemma");
const CANCEL_AFTER_MB = Number(env("CANCEL_AFTER_MB", "4"));
const GHOST_TIMEOUT_MS = Number(env("GHOST_TIMEOUT_MS", "120000"));

const { timings, mark, log } = clock();

/** Files under dir (recursively) whose name ends with suffix: path → size. */
function filesEnding(dir, suffix) {
  const out = {};
  const walk = (d) => {
    for (const e of fs.existsSync(d) ? fs.readdirSync(d, { withFileTypes: true }) : []) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        walk(p);
      } else if (e.name.endsWith(suffix)) {
        out[p] = fs.statSync(p).size;
      }
    }
  };
  walk(dir);
  return out;
}

/** The user settings.json as VS Code left it (JSON with comments allowed). */
function readSettings(file) {
  const text = fs.readFileSync(file, "utf8");
  try {
    return JSON.parse(text);
  } catch {
    return JSON.parse(text.replace(/^\s*\/\/.*$/gm, "").replace(/,(\s*[}\]])/g, "$1"));
  }
}

/** The picker's rows now shown (label, description and detail run together). */
function pickerRows(page) {
  return page.evaluate(() => [...document.querySelectorAll(".quick-input-list .monaco-list-row")]
    .map((e) => (e.textContent ?? "").replace(/\s+/g, " ").trim()));
}

/** A screenshot beside SCREENSHOT: NAME.png → NAME-<what>.png. */
function shotPath(what) {
  return SCREENSHOT.replace(/\.png$/, `-${what}.png`);
}

/**
 * Open the picker, filter it down to MODEL and return its row's text (the picker stays open);
 * `shot`: a screenshot of the whole list first.
 */
async function openPickerAt(page, shot) {
  await runCommand(page, "codefill: Choose Model");
  const row = page.locator(".quick-input-list .monaco-list-row", { hasText: MODEL }).first();
  await row.waitFor({ timeout: 60_000 });
  const all = await pickerRows(page);
  if (shot) {
    await page.screenshot({ path: shotPath(shot) });
  }
  await page.locator(".quick-input-widget input").first().fill(MODEL);
  await page.waitForFunction((m) => {
    const rows = [...document.querySelectorAll(".quick-input-list .monaco-list-row")];
    return rows.length >= 1 && (rows[0].textContent ?? "").includes(m);
  }, MODEL);
  return { all, row: (await pickerRows(page))[0] };
}

/** Poll the toasts until one matches `re`; collects "N of M MB" progress messages on the way. */
async function waitToast(page, re, timeoutMs, progress = []) {
  return waitFor(async () => {
    const texts = await toastTexts(page);
    for (const t of texts) {
      const m = /(\d+) of (\d+) MB/.exec(t);
      if (m && t.includes(`pulling ${MODEL}`) && progress.at(-1) !== m[0]) {
        progress.push(m[0]);
      }
    }
    return texts.find((t) => re.test(t));
  }, timeoutMs, `a notification matching ${re}`);
}

const vscode = {};
const result = { ok: false };
try {
  await startVSCodeFromEnv({ mark, log }, vscode);
  const page = vscode.page;
  await page.waitForTimeout(1500);
  await openFile(page, "fib.py", "fibonacci");
  mark("file open");
  // The embedded default model first.
  await waitStatusIcon(page, "check", GHOST_TIMEOUT_MS);
  mark("embedded model ready");
  log("status bar: ready (embedded model)");

  // 1. Pick MODEL: not pulled, so the pull starts in a progress notification; cancel it there.
  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  const first = await openPickerAt(page, "picker");
  result.pickerRows = first.all;
  result.pickerRowBefore = first.row;
  log(`picker: ${JSON.stringify(first.all)}`);
  await page.keyboard.press("Enter");
  const progressToast = page.locator(".notifications-toasts .notification-list-item", { hasText: `pulling ${MODEL}` })
    .first();
  await progressToast.waitFor({ timeout: 60_000 });
  mark("pull started");
  const cancelProgress = [];
  await waitFor(async () => {
    const text = ((await progressToast.textContent().catch(() => "")) ?? "").replace(/\s+/g, " ");
    const m = /(\d+) of (\d+) MB/.exec(text);
    if (m && cancelProgress.at(-1) !== m[0]) {
      cancelProgress.push(m[0]);
    }
    return m && Number(m[1]) >= CANCEL_AFTER_MB;
  }, 120_000, `${CANCEL_AFTER_MB} MB of ${MODEL}`);
  result.progressBeforeCancel = cancelProgress;
  await page.screenshot({ path: shotPath("progress") });
  await progressToast.locator(".monaco-button", { hasText: "Cancel" }).first().click();
  mark("cancel clicked");
  log(`cancel clicked after ${JSON.stringify(cancelProgress)}`);
  result.cancelMessage = await waitToast(page, /pull cancelled/, 60_000);
  mark("cancelled");
  log(`after cancel: ${result.cancelMessage}`);
  // The partial download stays and stops growing; nothing was set.
  await sleep(1500);
  const partials1 = filesEnding(STORE, ".partial");
  await sleep(2000);
  const partials2 = filesEnding(STORE, ".partial");
  result.partialBytes = Object.values(partials1)[0] ?? 0;
  result.partialStopped = Object.keys(partials1).length === 1
    && JSON.stringify(partials1) === JSON.stringify(partials2);
  result.ggufAfterCancel = Object.keys(filesEnding(STORE, ".gguf")).length;
  result.settingAfterCancel = readSettings(vscode.settingsFile)["codefill.engine.model"] ?? null;
  log(`partial file: ${JSON.stringify(partials2)}`);

  // 2. Pick it again: the pull resumes and finishes; the setting is written; the server loads it.
  await runCommand(page, "Notifications: Clear All Notifications");
  const second = await openPickerAt(page);
  result.pickerRowCancelled = second.row;
  await page.keyboard.press("Enter");
  mark("pull resumed");
  result.progressAfterResume = [];
  result.doneMessage = await waitToast(page, new RegExp(`codefill: using ${MODEL.replace(/[.]/g, "\\.")} `), 180_000,
    result.progressAfterResume);
  mark("pulled");
  log(`pulled: ${result.doneMessage}`);
  result.settingAfterPull = await waitFor(() => readSettings(vscode.settingsFile)["codefill.engine.model"], 15_000,
    "codefill.engine.model in settings.json");
  result.ggufAfterPull = Object.keys(filesEnding(STORE, ".gguf"));
  // Wait until the server reports MODEL loaded: its status names the pulled file and template.
  const deadline = Date.now() + 120_000;
  for (;;) {
    await waitStatusIcon(page, "check", 120_000);
    await runCommand(page, "Notifications: Clear All Notifications");
    await runCommand(page, "codefill: Show Status");
    const status = await waitToast(page, /model (ready|loading|failed|starting|idle)/, 30_000);
    if (status.includes(`template ${TEMPLATE}`) || Date.now() > deadline) {
      result.statusAfterPull = status;
      break;
    }
    await sleep(1000);
  }
  mark("model loaded");
  log(`status: ${result.statusAfterPull}`);
  await runCommand(page, "Notifications: Clear All Notifications");
  const third = await openPickerAt(page);
  result.pickerRowAfter = third.row;
  await page.keyboard.press("Escape");

  // 3. Ghost text from the pulled model.
  await page.click(".monaco-editor .view-lines:has-text('fibonacci')");
  const typedAt = await typeAtLineEnd(page, 4, "fib");
  result.ghost = await waitFor(async () => {
    const g = await ghostTexts(page);
    return g.some((t) => t.trim().length > 0) ? g : undefined;
  }, GHOST_TIMEOUT_MS, "ghost text");
  result.ghostLatencyS = (Date.now() - typedAt) / 1000;
  mark("ghost text");
  log(`ghost text: ${JSON.stringify(result.ghost)}`);
  await page.screenshot({ path: SCREENSHOT });
  result.screenshot = SCREENSHOT;
  result.ok = true;
} catch (err) {
  result.error = err instanceof Error ? `${err.message}\n${err.stack}` : String(err);
  try {
    if (vscode?.page) {
      await vscode.page.screenshot({ path: shotPath("failure") });
      result.failureScreenshot = shotPath("failure");
    }
  } catch {
    // no screenshot
  }
} finally {
  result.timings = timings;
  if (!result.ok && vscode) {
    result.codeServerLog = (vscode.serverLog ?? []).join("").slice(-4000);
  }
  await stopVSCode(vscode);
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(result.ok ? 0 : 1);
}
