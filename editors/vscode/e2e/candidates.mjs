// End-to-end test of ranked candidates in a real VS Code (code-server in headless Chromium) with
// the real `codefill serve` and its embedded model: with codefill.completion.candidates = 4,
// types in fib.py, waits for the ghost text and for the final answer's candidates to be offered
// (the toolbar counts them, "1/N"; the ghost text is noted at each animation frame meanwhile, to
// check that it only grew and never went away), shows the next candidate with Alt+]
// (editor.action.inlineSuggest.showNext: the ghost text must change and the toolbar count move
// to "2/N"), goes back with Alt+[ and forward again, takes a screenshot, types the first
// character of the candidate shown (its rest must stay shown once the server has answered),
// accepts with Tab, saves, and reads the file. Prints one JSON line.
//
// Environment: CODE_SERVER, VSIX, WORKSPACE (a copy of the fixture), SERVER_CMD (JSON list for
// codefill.server.command), SCREENSHOT (PNG path), CANDIDATES (default 4), MAX_TOKENS (default
// 16), GHOST_TIMEOUT_MS (default 120000), CHROMIUM (default /usr/bin/chromium).
import * as fs from "node:fs";
import * as path from "node:path";
import {
  clock, env, ghostInline, openFile, sleep, startVSCodeFromEnv, stopVSCode, suggestionCount,
  typeAtLineEnd, waitAnswered, waitFor, waitStatusIcon,
} from "./common.mjs";

const WORKSPACE = env("WORKSPACE");
const SCREENSHOT = env("SCREENSHOT");
const CANDIDATES = Number(env("CANDIDATES", "4"));
const MAX_TOKENS = Number(env("MAX_TOKENS", "16"));
const GHOST_TIMEOUT_MS = Number(env("GHOST_TIMEOUT_MS", "120000"));

const { timings, mark, log } = clock();

/** Wait until the cursor line's ghost text is non-empty and passes `ok`; returns it. */
function waitGhost(page, ok, timeoutMs, what) {
  return waitFor(async () => {
    const g = await ghostInline(page);
    return g.trim() && ok(g) ? g : undefined;
  }, timeoutMs, what);
}

/** Note the cursor line's ghost text at each animation frame where it changed (stopGhostLog
 * returns the notes: text and page time in ms). */
function startGhostLog(page) {
  return page.evaluate(() => {
    const w = /** @type {any} */ (window);
    w.__ghostLog = [];
    w.__ghostLogOn = true;
    let last = null;
    const tick = () => {
      const t = [...document.querySelectorAll("[class*='ghost-text-decoration']")]
        .filter((e) => !e.parentElement?.closest("[class*='ghost-text-decoration']"))
        .map((e) => (e.textContent ?? "").replace(/\u00a0/g, " ")).join("");
      if (t !== last) {
        w.__ghostLog.push({ text: t, ms: Math.round(performance.now()) });
        last = t;
      }
      if (w.__ghostLogOn) {
        requestAnimationFrame(tick);
      }
    };
    requestAnimationFrame(tick);
  });
}

function stopGhostLog(page) {
  return page.evaluate(() => {
    const w = /** @type {any} */ (window);
    w.__ghostLogOn = false;
    return w.__ghostLog;
  });
}

/** The codefill output channel as VS Code logged it under the user data dir ("" if none). */
function extensionLog(userData) {
  const found = [];
  const walk = (d) => {
    for (const e of userData && fs.existsSync(d) ? fs.readdirSync(d, { withFileTypes: true }) : []) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        walk(p);
      } else if (/codefill.*\.log$/i.test(e.name)) {
        found.push(p);
      }
    }
  };
  walk(path.join(userData ?? "", "logs"));
  return found.map((p) => `--- ${p}\n${fs.readFileSync(p, "utf8")}`).join("\n");
}

const vscode = {};
const result = { ok: false };
try {
  await startVSCodeFromEnv({ mark, log, settings: {
    "codefill.completion.candidates": CANDIDATES,
    "codefill.completion.mode": "single",
    "codefill.prompt.max_tokens": MAX_TOKENS,
    // A loaded test machine must not cut the alternatives short.
    "codefill.engine.time_budget_ms": 60000,
    // The server's decisions (candidates found and ranked) go to the log read on failure.
    "codefill.completion.log_level": "debug",
    // The toolbar with its "1/3" count shows with the ghost text, not only on hover.
    "editor.inlineSuggest.showToolbar": "always",
  } }, vscode);
  const page = vscode.page;
  await page.waitForTimeout(1500);
  await openFile(page, "fib.py", "fibonacci");
  mark("file open");
  await waitStatusIcon(page, "check", GHOST_TIMEOUT_MS);
  mark("model ready");
  log("status bar: ready");

  // Line 4 is "    return "; type at its end and wait for the ghost text. (One letter: after
  // "fib" the server ranked three candidates but VS Code's toolbar never counted more than one;
  // after "f" it counts them.)
  await page.click(".monaco-editor .view-lines");
  const typedAt = await typeAtLineEnd(page, 4, "f");
  // From now on, each animation frame notes the cursor line's ghost text when it changes: the
  // texts shown while the suggestion streams, and any frame without it.
  await startGhostLog(page);
  await waitGhost(page, () => true, GHOST_TIMEOUT_MS, "ghost text");
  result.ghostLatencyS = (Date.now() - typedAt) / 1000;
  mark("ghost text");
  // Once the answer is final the extension offers every candidate without being asked: VS Code
  // queries it again (explicitly, so the toolbar counts them: "1/N").
  result.countFinal = await waitFor(async () => {
    const c = await suggestionCount(page);
    return /^1\/[2-9]$/.test(c) ? c : undefined;
  }, GHOST_TIMEOUT_MS, "the toolbar to count several candidates (1/N)").catch(async (err) => {
    result.countAtTimeout = await suggestionCount(page);
    throw err;
  });
  await sleep(500);
  result.ghostLog = await stopGhostLog(page);
  result.first = await ghostInline(page);
  mark("final answer");
  log(`first candidate: ${JSON.stringify(result.first)} (toolbar ${JSON.stringify(result.countFinal)}); `
    + `ghost text over time: ${JSON.stringify(result.ghostLog)}`);

  // Alt+] (editor.action.inlineSuggest.showNext): another candidate.
  await page.keyboard.press("Alt+BracketRight");
  result.second = await waitGhost(page, (g) => g !== result.first, 15_000,
    `another candidate after Alt+] (the ghost text was ${JSON.stringify(result.first)})`);
  await sleep(300);
  result.second = await ghostInline(page);
  result.countAfterNext = await suggestionCount(page);
  mark("next candidate");
  log(`after Alt+]: ${JSON.stringify(result.second)} (toolbar ${JSON.stringify(result.countAfterNext)})`);

  // Alt+[ (showPrevious) goes back to the first; Alt+] forward again.
  await page.keyboard.press("Alt+BracketLeft");
  result.back = await waitGhost(page, (g) => g === result.first, 15_000, "the first candidate again after Alt+[");
  result.countAfterPrevious = await suggestionCount(page);
  await page.keyboard.press("Alt+BracketRight");
  await waitGhost(page, (g) => g === result.second, 15_000, "the second candidate again after Alt+]");
  await sleep(300);
  result.countAccepted = await suggestionCount(page);
  mark("cycled");
  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT });
  result.screenshot = SCREENSHOT;

  // Typing what the candidate shown begins with keeps it: VS Code shows the rest of it meanwhile,
  // and the next answer (the server's candidates, typed through) keeps it first even where the
  // typed text fits the first candidate too.
  result.typed = /^[A-Za-z0-9_ ]/.test(result.second) ? result.second[0] : "";
  if (result.typed) {
    await startGhostLog(page);
    await page.keyboard.type(result.typed);
    await waitAnswered(page, 2000, GHOST_TIMEOUT_MS);
    result.typedLog = await stopGhostLog(page);
    result.afterTyping = await ghostInline(page);
    mark("typed through");
    log(`typed ${JSON.stringify(result.typed)}: ${JSON.stringify(result.afterTyping)}; `
      + `ghost text over time: ${JSON.stringify(result.typedLog)}`);
  }

  // Tab accepts the candidate shown: the second one.
  await page.keyboard.press("Tab");
  await page.waitForTimeout(500);
  await page.keyboard.press("Escape");
  await page.keyboard.press("Control+S");
  const file = path.join(WORKSPACE, "fib.py");
  const want = `    return f${result.second}`.trimEnd();
  result.fileText = await waitFor(() => {
    const text = fs.readFileSync(file, "utf8");
    return text.split("\n")[3].trimEnd() === want ? text : undefined;
  }, 30_000, `line 4 to be ${JSON.stringify(want)} (it is ${
    JSON.stringify(fs.readFileSync(file, "utf8").split("\n")[3])})`).catch(() => fs.readFileSync(file, "utf8"));
  mark("saved");
  result.ok = true;
} catch (err) {
  result.error = err instanceof Error ? `${err.message}\n${err.stack}` : String(err);
  try {
    if (vscode?.page) {
      result.ghostAtFailure = await ghostInline(vscode.page);
      result.countAtFailure = await suggestionCount(vscode.page);
      await vscode.page.screenshot({ path: SCREENSHOT.replace(/\.png$/, "-failure.png") });
      result.failureScreenshot = SCREENSHOT.replace(/\.png$/, "-failure.png");
    }
  } catch {
    // no screenshot
  }
} finally {
  result.timings = timings;
  if (!result.ok && vscode) {
    result.codeServerLog = (vscode.serverLog ?? []).join("").slice(-4000);
    result.extensionLog = extensionLog(vscode.userData).slice(-6000);
  }
  await stopVSCode(vscode);
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(result.ok ? 0 : 1);
}
