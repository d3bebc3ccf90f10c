// The extension's own logic, free of the `vscode` module so that plain node tests can run it:
// finding the server command, turning VS Code's settings into the server's settings tree, the
// status bar text (remote engine health included), when to ask the server for its status, the
// bounded restart policy, the state of streamed suggestions and their ranked candidates, the
// model picker's items, progress
// and outcome, and when to tell the server where the user is looking (codefill/didFocus).
import * as path from "node:path";

/** Keys under `codefill.` that belong to the extension, not to the server's config tree. */
export const CLIENT_SECTIONS = ["server", "streaming"];
/** The server's top-level sections (lsp_server/config.py; tests/test_vscode.py checks the list). */
export const SERVER_SECTIONS = ["engine", "remote", "prompt", "context", "completion"];

export type Settings = { [key: string]: unknown };

/**
 * The server's settings tree from `workspace.getConfiguration("codefill")` (as a plain object):
 * only the server's sections, with `completion.enabled` forced off when `enabled` is false.
 */
export function toServerSettings(codefill: Settings, enabled = true): Settings {
  const out: Settings = {};
  for (const section of SERVER_SECTIONS) {
    const value = codefill[section];
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      out[section] = JSON.parse(JSON.stringify(value));
    }
  }
  if (!enabled) {
    const completion = (out.completion ?? {}) as Settings;
    completion.enabled = false;
    out.completion = completion;
  }
  return out;
}

export interface ServerCommand {
  command: string;
  args: string[];
  /** Where it was found, for the log and the status. */
  source: string;
}

export interface FindOptions {
  /** `codefill.server.command` */
  command: string[];
  /** `codefill.server.pythonPath` */
  pythonPath: string;
  /** `python.defaultInterpreterPath` (the Python extension's setting), or "" */
  defaultInterpreter: string;
  env: { [key: string]: string | undefined };
  workspaceFolders: string[];
  platform: string;
  isExecutable: (file: string) => boolean;
}

function binDir(platform: string): string {
  return platform === "win32" ? "Scripts" : "bin";
}

function exe(platform: string, name: string): string {
  return platform === "win32" ? `${name}.exe` : name;
}

/** The command that starts `codefill serve`, or an error saying how to fix it. */
export function findServer(o: FindOptions): ServerCommand | { error: string } {
  if (o.command.length > 0) {
    const [command, ...args] = o.command;
    const isPath = command.includes("/") || command.includes("\\");
    const resolved = isPath ? (o.isExecutable(command) ? command : undefined) : lookPath(command, o);
    if (!resolved) {
      return { error: `codefill.server.command: ${command} is not an executable file${isPath ? "" : " on PATH"}` };
    }
    return { command: resolved, args, source: "codefill.server.command" };
  }
  if (o.pythonPath) {
    if (!o.isExecutable(o.pythonPath)) {
      return { error: `codefill.server.pythonPath: ${o.pythonPath} is not an executable file` };
    }
    return { command: o.pythonPath, args: ["-m", "lsp_server.cli.main", "serve"],
      source: "codefill.server.pythonPath" };
  }
  const candidates: [string, string][] = [];
  const bin = binDir(o.platform);
  if (o.defaultInterpreter) {
    candidates.push([path.join(path.dirname(o.defaultInterpreter), exe(o.platform, "codefill")),
      "python.defaultInterpreterPath"]);
  }
  if (o.env.VIRTUAL_ENV) {
    candidates.push([path.join(o.env.VIRTUAL_ENV, bin, exe(o.platform, "codefill")), "$VIRTUAL_ENV"]);
  }
  for (const folder of o.workspaceFolders) {
    for (const venv of [".venv", "venv"]) {
      candidates.push([path.join(folder, venv, bin, exe(o.platform, "codefill")), `${venv} of the workspace`]);
    }
  }
  for (const [file, source] of candidates) {
    if (o.isExecutable(file)) {
      return { command: file, args: ["serve"], source };
    }
  }
  const onPath = lookPath(exe(o.platform, "codefill"), o);
  if (onPath) {
    return { command: onPath, args: ["serve"], source: "PATH" };
  }
  return {
    error: "the codefill language server was not found (looked in python.defaultInterpreterPath's "
      + "environment, $VIRTUAL_ENV, the workspace's .venv and PATH): install it with "
      + "`pip install codefill` or set codefill.server.command",
  };
}

function lookPath(name: string, o: FindOptions): string | undefined {
  const sep = o.platform === "win32" ? ";" : ":";
  for (const dir of (o.env.PATH ?? "").split(sep)) {
    if (dir) {
      const file = path.join(dir, name);
      if (o.isExecutable(file)) {
        return file;
      }
    }
  }
  return undefined;
}

export type ModelState = "starting" | "idle" | "loading" | "ready" | "failed";
export type RemoteHealth = "unknown" | "ok" | "failing";

/** The remote engine as `codefill/status` reports it (`model.backend` other than "local"). */
export interface RemoteInput {
  /** "llama-server" | "openai" (or "remote" while it is being set up) */
  backend: string;
  url?: string;
  health: RemoteHealth;
  lastError?: string;
  /** the local model answers while the remote fails (`remote.fallback`) */
  fallback?: boolean;
}

export interface StatusInput {
  enabled: boolean;
  /** The client could not start or gave up restarting: the reason. */
  clientError?: string;
  model?: ModelState;
  modelError?: string;
  percent?: number;
  generating: boolean;
  remote?: RemoteInput;
}

export interface StatusView {
  text: string;
  tooltip: string;
  kind: "off" | "error" | "loading" | "warning" | "generating" | "ready";
}

/** The part of a `codefill/status` answer that the status bar uses. */
export interface StatusModel {
  state?: ModelState;
  error?: string | null;
  backend?: string;
  url?: string;
  fallback?: unknown;
  remote?: { health?: string; last_error?: string | null };
}

/** The remote engine of a `codefill/status` answer's `model`, or undefined for the local engine. */
export function remoteOf(model: StatusModel | undefined): RemoteInput | undefined {
  if (!model || !model.backend || model.backend === "local") {
    return undefined;
  }
  const health = model.remote?.health;
  return {
    backend: model.backend,
    url: model.url || undefined,
    health: health === "ok" || health === "failing" ? health : "unknown",
    lastError: model.remote?.last_error || undefined,
    fallback: model.fallback !== undefined && model.fallback !== null,
  };
}

/** What the status bar item shows. */
export function statusView(s: StatusInput): StatusView {
  if (s.clientError) {
    return { text: "$(error) codefill", tooltip: `codefill: ${s.clientError} (click for details)`, kind: "error" };
  }
  if (s.model === "failed") {
    const what = s.remote ? "the remote engine could not be set up" : "the model failed to load";
    return { text: "$(error) codefill", tooltip: `codefill: ${what}: ${s.modelError ?? "unknown error"} (click for details)`, kind: "error" };
  }
  if (!s.enabled) {
    return { text: "$(circle-slash) codefill", tooltip: "codefill: suggestions are off (click for status; codefill: Toggle Suggestions)", kind: "off" };
  }
  if (s.model === undefined || s.model === "starting" || s.model === "idle" || s.model === "loading") {
    const pct = s.percent !== undefined ? ` ${Math.round(s.percent)}%` : "";
    const what = s.remote ? `connecting to the remote engine${s.remote.url ? ` at ${s.remote.url}` : ""}` : "loading the model";
    return { text: `$(loading~spin) codefill${pct}`, tooltip: `codefill: ${what}`, kind: "loading" };
  }
  if (s.remote?.health === "failing") {
    const meanwhile = s.remote.fallback ? "; the local model answers meanwhile" : "; no suggestions until it answers";
    return { text: "$(warning) codefill",
      tooltip: `codefill: remote engine failing: ${s.remote.lastError ?? "unknown error"}${meanwhile} (click for details)`,
      kind: "warning" };
  }
  if (s.generating) {
    return { text: "$(sync~spin) codefill", tooltip: "codefill: generating a suggestion", kind: "generating" };
  }
  const name = s.remote && s.remote.backend !== "remote" ? ` ${s.remote.backend}` : "";
  const where = s.remote ? ` (remote engine${name}${s.remote.url ? ` at ${s.remote.url}` : ""})` : "";
  return { text: "$(check) codefill", tooltip: `codefill: ready${where} (click for status)`, kind: "ready" };
}

/**
 * How long to wait before polling `codefill/status` again, or undefined to stop polling: every
 * second while the model loads (progress), every 2 s while a remote engine's health is not known
 * yet (the server probes it right after switching to it; while it switches, the status may still
 * say "ready"), every 5 s while a remote engine is failing (to show when it is back; typing also
 * refreshes, see `refreshAfterAnswer`).
 */
export function statusPollMs(s: StatusInput): number | undefined {
  if (s.clientError || s.model === "failed") {
    return undefined;
  }
  if (s.model === undefined || s.model === "starting" || s.model === "idle" || s.model === "loading") {
    return 1000;
  }
  if (s.remote?.health === "unknown") {
    return 2000;
  }
  if (s.remote?.health === "failing") {
    return 5000;
  }
  return undefined;
}

/**
 * Whether a finished suggestion request should refresh `codefill/status` (in the background,
 * never delaying the suggestion): an "engine error" answer at once (at most once a second);
 * with a remote engine, any answer every 5 s at most (every second while it is failing), which
 * also catches a remote that fails while `remote.fallback` keeps the suggestions coming.
 */
export function refreshAfterAnswer(s: StatusInput, reason: string | undefined, msSinceRefresh: number): boolean {
  if (reason?.startsWith("engine error")) {
    return msSinceRefresh >= 1000;
  }
  if (!s.remote) {
    return false;
  }
  return msSinceRefresh >= (s.remote.health === "ok" ? 5000 : 1000);
}

/** Restart a crashed server at most `max` times within `windowMs`. */
export class RestartPolicy {
  private times: number[] = [];
  constructor(public max: number, private windowMs = 180_000, private now: () => number = Date.now) {}

  /** Called when the server connection closed unexpectedly: restart it? */
  shouldRestart(): boolean {
    const t = this.now();
    this.times = this.times.filter((x) => t - x < this.windowMs);
    if (this.times.length >= this.max) {
      return false;
    }
    this.times.push(t);
    return true;
  }

  get count(): number {
    return this.times.length;
  }

  reset(): void {
    this.times = [];
  }
}

/** One streamed suggestion (codefill/complete with a streamId). */
export interface Stream {
  id: string;
  /** document uri, version and position the stream was asked for */
  key: string;
  /** the first (greedy) candidate: the partials while it grows, then the final answer's text */
  text: string;
  /**
   * The final answer's ranked candidates (`candidates` of codefill/complete, the first is
   * `text`), ordered so that the ghost text shown while streaming stays first; empty until done.
   */
  candidates: string[];
  done: boolean;
  /** the texts last handed to VS Code, one inline completion item each (the first is shown) */
  shown?: string[];
  /** queries of VS Code waiting for the final answer (see `Streams.holds`) */
  holding: number;
  /** the cursor the stream was asked for */
  at?: Position;
  /**
   * The text VS Code still shows here from the previous suggestion, typed through (see
   * `typedThrough`): a text that does not go on with it is not offered while the suggestion
   * streams, and the candidate that does goes first.
   */
  expected?: string;
  /** which of the `shown` items VS Code shows, as far as the extension knows (see `cycle`) */
  selected: number;
  /** showNext (+1) / showPrevious (-1) presses that apply to the next items handed to VS Code */
  cycles: number;
  waiters: (() => void)[];
}

export interface Position {
  line: number;
  character: number;
}

/**
 * The suggestion texts of a codefill/complete answer: `text` first, then the other `candidates`
 * in the server's rank order; empty and repeated texts are left out (a repeated item would show
 * as a candidate the user cannot tell apart).
 */
export function candidatesOf(text: unknown, candidates: unknown): string[] {
  const out: string[] = [];
  const add = (t: unknown) => {
    if (typeof t === "string" && t.length > 0 && !out.includes(t)) {
      out.push(t);
    }
  };
  add(text);
  if (Array.isArray(candidates)) {
    candidates.forEach(add);
  }
  return out;
}

/**
 * Keep the ghost text the user is looking at from jumping to another candidate: when the first
 * candidate does not continue (or shorten) the text shown, the first one that does moves to the
 * front; the others keep their rank. The server already puts the streamed text first; this only
 * guards the client against an answer that does not.
 */
export function keepShownFirst(candidates: string[], shown: string | undefined): string[] {
  if (!shown || candidates.length < 2) {
    return candidates;
  }
  const fits = (c: string) => c.startsWith(shown) || shown.startsWith(c);
  if (fits(candidates[0])) {
    return candidates;
  }
  const i = candidates.findIndex(fits);
  if (i < 0) {
    return candidates;
  }
  return [candidates[i], ...candidates.slice(0, i), ...candidates.slice(i + 1)];
}

function sameTexts(a: string[] | undefined, b: string[]): boolean {
  return a !== undefined && a.length === b.length && a.every((t, i) => t === b[i]);
}

/** The streams in flight, at most one per document. */
export class Streams {
  private byId = new Map<string, Stream>();
  private byDoc = new Map<string, Stream>();
  private seq = 0;

  constructor(private prefix = "vscode") {}

  static key(uri: string, version: number, line: number, character: number): string {
    return `${uri}#${version}@${line}:${character}`;
  }

  /** The stream for exactly this key, if one is in flight or finished. */
  find(uri: string, key: string): Stream | undefined {
    const s = this.byDoc.get(uri);
    return s && s.key === key ? s : undefined;
  }

  /** The document's stream (in flight or finished), if any. */
  current(uri: string): Stream | undefined {
    return this.byDoc.get(uri);
  }

  /** Start a stream for uri/key (at the cursor `at`); returns it and the one it replaces (to
   * cancel). */
  start(uri: string, key: string, at?: Position): { stream: Stream; replaced?: Stream } {
    const replaced = this.byDoc.get(uri);
    if (replaced) {
      this.byId.delete(replaced.id);
    }
    this.seq += 1;
    const stream: Stream = { id: `${this.prefix}-${this.seq}`, key, text: "", candidates: [], done: false,
      holding: 0, at, selected: 0, cycles: 0, waiters: [] };
    this.byId.set(stream.id, stream);
    this.byDoc.set(uri, stream);
    return { stream, replaced };
  }

  /** A codefill/partial notification: returns the stream when its text grew. */
  partial(id: string, text: string): Stream | undefined {
    const s = this.byId.get(id);
    if (!s || s.done || typeof text !== "string" || text.length <= s.text.length) {
      return undefined;
    }
    s.text = text;
    Streams.wake(s);
    return s;
  }

  /**
   * The final answer (authoritative: it may be shorter than the partials) with its ranked
   * candidates (see `candidatesOf`; the one that keeps the shown ghost text goes first).
   */
  finish(id: string, text: string | undefined, candidates?: unknown): Stream | undefined {
    const s = this.byId.get(id);
    if (!s) {
      return undefined;
    }
    s.candidates = keepShownFirst(candidatesOf(text, candidates), s.shown?.[0] ?? s.expected);
    s.text = s.candidates[0] ?? "";
    s.done = true;
    this.byId.delete(id);
    Streams.wake(s);
    return s;
  }

  /**
   * The texts to offer VS Code now, one inline completion item each: while the stream grows,
   * its one text; once done, every candidate (VS Code's showNext/showPrevious cycle them).
   */
  static items(s: Stream): string[] {
    if (s.done) {
      return [...s.candidates];
    }
    const fits = s.expected === undefined || s.text.startsWith(s.expected) || s.expected.startsWith(s.text);
    return s.text && fits ? [s.text] : [];
  }

  /**
   * The items are handed to VS Code: a list other than the one it had starts at its first item
   * (VS Code keeps the item shown by its text and place), moved by the presses of showNext /
   * showPrevious that waited for it.
   */
  static show(s: Stream, texts: string[]): void {
    if (!sameTexts(s.shown, texts)) {
      s.selected = 0;
    }
    s.shown = texts;
    if (s.cycles !== 0 && texts.length > 0) {
      s.selected = mod(s.selected + s.cycles, texts.length);
    }
    s.cycles = 0;
  }

  /**
   * showNext (+1) or showPrevious (-1) was pressed. VS Code first asks again (an explicit query)
   * unless its items here came from one (`lastQueryExplicit`) and none is waiting (`holding`),
   * then shows the next or previous of the items it has, wrapping around: the move applies to
   * the items the query gets (`show`), else at once to the items VS Code has.
   */
  static cycle(s: Stream, delta: number, lastQueryExplicit: boolean): void {
    if (s.holding > 0 || !lastQueryExplicit) {
      s.cycles += delta;
    } else if (s.shown !== undefined && s.shown.length > 0) {
      s.selected = mod(s.selected + delta, s.shown.length);
    }
  }

  /** The text VS Code shows at the stream's place, as far as the extension knows. */
  static shownText(s: Stream): string | undefined {
    return s.shown?.[s.selected] ?? s.expected;
  }

  /** Whether VS Code shows items of this stream that are out of date (query the provider again). */
  static stale(s: Stream): boolean {
    return s.shown !== undefined && !sameTexts(s.shown, Streams.items(s));
  }

  /** Forget the document's stream (document changed or closed); returns it to cancel. */
  drop(uri: string): Stream | undefined {
    const s = this.byDoc.get(uri);
    if (s) {
      this.byDoc.delete(uri);
      this.byId.delete(s.id);
      s.done = true;
      Streams.wake(s);
    }
    return s;
  }

  get inFlight(): number {
    return this.byId.size;
  }

  /**
   * Whether a query of VS Code should wait for the final answer instead of answering with the
   * text so far: an explicit query (VS Code's trigger, showNext/showPrevious) of a stream whose
   * text VS Code shows already. VS Code answers its next explicit queries at that place from
   * this answer (see `requeryCommands`), so it had better be the final one.
   */
  static holds(s: Stream, explicit: boolean): boolean {
    return explicit && !s.done && s.shown !== undefined;
  }

  /** Resolve when the stream has an item to offer (`items`) or is done, or with `untilDone` when
   * it is done (or after timeoutMs). */
  static wait(s: Stream, timeoutMs: number, untilDone = false): Promise<void> {
    const ready = () => s.done || (!untilDone && Streams.items(s).length > 0);
    if (ready()) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      let settled = false;
      const settle = () => {
        settled = true;
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(settle, timeoutMs);
      const arm = () => s.waiters.push(() => {
        if (!settled) {
          if (ready()) {
            settle();
          } else {
            arm();
          }
        }
      });
      arm();
    });
  }

  private static wake(s: Stream): void {
    const waiters = s.waiters;
    s.waiters = [];
    for (const w of waiters) {
      w();
    }
  }
}

function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

/** The cursor after `text` was inserted at `at`. */
export function positionAfter(at: Position, text: string): Position {
  const lines = text.split("\n");
  return lines.length === 1 ? { line: at.line, character: at.character + text.length }
    : { line: at.line + lines.length - 1, character: lines[lines.length - 1].length };
}

/** A document change as VS Code reports it (`TextDocumentContentChangeEvent`). */
export interface ContentChange {
  range: { start: Position; end: Position };
  text: string;
}

/** What VS Code shows at a place: the text of a suggestion at a cursor. */
export interface Shown {
  at: Position;
  text: string;
}

/** What VS Code shows at a stream's place, as far as the extension knows. */
export function shownAt(s: Stream | undefined): Shown | undefined {
  const text = s ? Streams.shownText(s) : undefined;
  return s?.at && text ? { at: s.at, text } : undefined;
}

/**
 * The user typed (or accepted part of the suggestion) where VS Code showed `shown`: what is left
 * of it, at the cursor after the change (`key` for the document's new `version`). VS Code keeps
 * showing that candidate while the user types what it begins with; the next answer (where the
 * server may put another candidate first when the typed text fits it too) then keeps it first.
 * Undefined when the change is not one insertion at that cursor that the text begins with and
 * goes on after.
 */
export function typedThrough(uri: string, shown: Shown | undefined, changes: readonly ContentChange[],
  version: number): (Shown & { key: string }) | undefined {
  if (!shown || changes.length !== 1) {
    return undefined;
  }
  const { range, text } = changes[0];
  const at = shown.at;
  const empty = range.start.line === range.end.line && range.start.character === range.end.character;
  if (!empty || range.start.line !== at.line || range.start.character !== at.character
      || !text || !shown.text.startsWith(text) || shown.text.length === text.length) {
    return undefined;
  }
  const after = positionAfter(at, text);
  return { key: Streams.key(uri, version, after.line, after.character), at: after,
    text: shown.text.slice(text.length) };
}

/** VS Code's command that asks the inline completion providers again (an explicit query). */
export const TRIGGER_INLINE = "editor.action.inlineSuggest.trigger";
/** VS Code's command that hides the inline suggestion and forgets its last result. */
export const HIDE_INLINE = "editor.action.inlineSuggest.hide";

/**
 * The commands that make VS Code query the provider again at the same cursor and document
 * version, when the items it shows are out of date (the suggestion grew, or its other candidates
 * came): none while a query waits for the final answer (it gets it); after an automatic query, an
 * explicit trigger; after an explicit one (`lastQueryExplicit`, or not known), VS Code answers
 * the next explicit trigger from that result (its InlineCompletionsSource: "satisfies"), so the
 * suggestion is hidden first, which forgets it: that blinks, so only for the final answer, never
 * while the suggestion streams.
 */
export function requeryCommands(s: Stream, lastQueryExplicit: boolean): string[] {
  if (s.holding > 0) {
    return [];
  }
  if (!lastQueryExplicit) {
    return [TRIGGER_INLINE];
  }
  return s.done ? [HIDE_INLINE, TRIGGER_INLINE] : [];
}

// --- choosing a model (codefill: Choose Model) ---------------------------------------------

/** One quantization of a `codefill/models` row (lsp_server/models/catalog.py `rows()`). */
export interface ModelQuant {
  quant: string;
  size_bytes: number;
  pulled: boolean;
  path?: string;
  prompt_tps?: number | null;
  gen_tps?: number | null;
}

/** One registry model of a `codefill/models` answer. */
export interface ModelRow {
  name: string;
  title?: string;
  parameters?: number;
  license?: string;
  gated?: boolean;
  for?: string;
  default_quant: string;
  recommended?: boolean;
  quantizations: ModelQuant[];
}

export interface ModelsResult {
  models: ModelRow[];
  /** the `engine.model` setting the server runs with */
  current: string;
}

export const EMBEDDED_LABEL = "Embedded default (Gemma 3 270M)";

/** One item of the model picker. */
export interface ModelPick {
  label: string;
  description: string;
  detail?: string;
  /** the `engine.model` value it stands for ("" for the embedded model) */
  value: string;
  pulled: boolean;
  /** the pulled file ("" when not pulled, or for the embedded model) */
  path: string;
  current: boolean;
  recommended: boolean;
}

/** "1.6 GB", "521 MB", "900 kB" (decimal units, as the server's progress messages). */
export function humanBytes(n: number): string {
  if (n >= 1e9) {
    return `${(n / 1e9).toFixed(1)} GB`;
  }
  if (n >= 1e6) {
    return `${Math.round(n / 1e6)} MB`;
  }
  return `${Math.max(1, Math.round(n / 1e3))} kB`;
}

/** "490M", "1.5B", "7.6B" */
export function humanParameters(n: number): string {
  if (n >= 1e9) {
    const b = n / 1e9;
    return `${b >= 10 ? Math.round(b) : Number(b.toFixed(1))}B`;
  }
  return `${Math.round(n / 1e6)}M`;
}

/** `engine.model` without its `:QUANT` ("qwen2.5-coder-1.5b:Q4_K_M" → name and quant). */
export function splitModelName(value: string): { name: string; quant?: string } {
  if (value.startsWith("hf://")) {
    return { name: value };
  }
  const i = value.lastIndexOf(":");
  return i > 0 ? { name: value.slice(0, i), quant: value.slice(i + 1) } : { name: value };
}

function expectedSpeed(q: ModelQuant): string {
  if (q.gen_tps === undefined || q.gen_tps === null) {
    return "";
  }
  const prompt = q.prompt_tps !== undefined && q.prompt_tps !== null ? `, prompt ${q.prompt_tps} tokens/s` : "";
  return `expected here: ${q.gen_tps} tokens/s generated${prompt}`;
}

/**
 * The picker's items: one per registry model (the recommended one first, then the registry's
 * order), then the embedded default. The model that `engine.model` names keeps its quantization
 * (picking it again keeps the setting as it is); the others stand for their default one.
 */
export function modelPicks(listed: ModelsResult): ModelPick[] {
  const current = splitModelName(listed.current ?? "");
  const rows = [...(listed.models ?? [])];
  rows.sort((a, b) => Number(Boolean(b.recommended)) - Number(Boolean(a.recommended)));
  const picks: ModelPick[] = [];
  for (const row of rows) {
    const isCurrent = row.name === current.name;
    const quantName = isCurrent && current.quant ? current.quant : row.default_quant;
    const q = row.quantizations.find((x) => x.quant.toLowerCase() === quantName.toLowerCase())
      ?? row.quantizations.find((x) => x.quant === row.default_quant)
      ?? row.quantizations[0];
    const parts: string[] = [];
    if (row.parameters) {
      parts.push(humanParameters(row.parameters));
    }
    if (q) {
      parts.push(q.quant);
      if (q.size_bytes) {
        parts.push(humanBytes(q.size_bytes));
      }
    }
    if (row.license) {
      parts.push(row.gated ? `${row.license} (gated)` : row.license);
    }
    if (q?.pulled) {
      parts.push("pulled");
    }
    const marks = [isCurrent ? "$(check) current" : "", row.recommended ? "$(star-full) recommended" : ""]
      .filter((m) => m);
    const detail = [row.for ? `for ${row.for}` : "", q ? expectedSpeed(q) : ""].filter((d) => d).join(" · ");
    picks.push({
      label: row.name,
      description: [...marks, parts.join(" · ")].filter((d) => d).join(" · "),
      detail: detail || undefined,
      value: isCurrent ? listed.current : row.name,
      pulled: Boolean(q?.pulled),
      path: q?.pulled ? q.path ?? "" : "",
      current: isCurrent,
      recommended: Boolean(row.recommended),
    });
  }
  const embeddedCurrent = (listed.current ?? "") === "";
  picks.push({
    label: EMBEDDED_LABEL,
    description: [embeddedCurrent ? "$(check) current" : "", "shipped with codefill, no download"]
      .filter((d) => d).join(" · "),
    value: "",
    pulled: true,
    path: "",
    current: embeddedCurrent,
    recommended: false,
  });
  return picks;
}

/** The picker's placeholder: what runs now when it is not one of the items (a path, hf://). */
export function pickerPlaceholder(listed: ModelsResult, picks: ModelPick[]): string {
  const current = listed.current ?? "";
  if (picks.some((p) => p.current)) {
    return "Model for codefill suggestions (one not pulled yet is downloaded from the Hugging Face hub)";
  }
  return `Model for codefill suggestions (now: ${current}; a registry model is downloaded from the Hugging Face hub)`;
}

/** The `$/progress` values of a pull (LSP WorkDoneProgressBegin/Report/End). */
export interface ProgressValue {
  kind: string;
  message?: string;
  percentage?: number;
}

/**
 * Turns the server's absolute percentages into the increments that VS Code's progress
 * notification adds up; never backwards, never past 100.
 */
export class PullProgress {
  private done = 0;

  step(value: ProgressValue): { increment?: number; message?: string } | undefined {
    if (!value || (value.kind !== "begin" && value.kind !== "report")) {
      return undefined;
    }
    const out: { increment?: number; message?: string } = {};
    if (typeof value.percentage === "number" && Number.isFinite(value.percentage)) {
      const pct = Math.min(100, Math.max(0, value.percentage));
      if (pct > this.done) {
        out.increment = pct - this.done;
        this.done = pct;
      }
    }
    if (value.message) {
      out.message = value.message;
    }
    return out.increment !== undefined || out.message !== undefined ? out : undefined;
  }

  get percentage(): number {
    return this.done;
  }
}

/** JSON-RPC / LSP error code of a cancelled request. */
export const REQUEST_CANCELLED = -32800;

export const PULL_CANCELLED_MESSAGE = "codefill: pull cancelled; choosing it again resumes";

/** What a failed `codefill/pullModel` tells the user: cancelled, or the error's first line. */
export function pullOutcome(err: unknown, cancelRequested: boolean): { kind: "cancelled" | "failed"; message: string } {
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  if (cancelRequested || code === REQUEST_CANCELLED) {
    return { kind: "cancelled", message: PULL_CANCELLED_MESSAGE };
  }
  const raw = err instanceof Error ? err.message
    : typeof err === "object" && err !== null && typeof (err as { message?: unknown }).message === "string"
      ? (err as { message: string }).message : typeof err === "string" ? err : "unknown error";
  const line = raw.split(/\r?\n/).map((l) => l.trim()).find((l) => l) ?? "unknown error";
  return { kind: "failed", message: line.startsWith("codefill:") ? line : `codefill: ${line}` };
}

/**
 * Where the picker writes `codefill.engine.model`: in the workspace settings when the workspace
 * sets it (a user setting would not apply there), else in the user settings.
 */
export function modelSettingTarget(inspected: { workspaceValue?: unknown } | undefined): "global" | "workspace" {
  return inspected?.workspaceValue !== undefined ? "workspace" : "global";
}

// --- where the user is looking (codefill/didFocus) -----------------------------------------

/** Quiet time after the last cursor move before its line counts as looked at (ms). */
export const FOCUS_REST_MS = 300;
/** Wait after an editor became the active one (coalesces quick switches; didOpen goes first). */
export const FOCUS_ACTIVE_MS = 50;

/**
 * Whether completions are on for a language, as the server reads `completion.languages`
 * (lsp_server/config.py `language_enabled`): the languageId's entry, else "*", else on.
 */
export function languageEnabled(languages: unknown, languageId: string): boolean {
  if (languages === null || typeof languages !== "object" || Array.isArray(languages)) {
    return true;
  }
  const table = languages as { [id: string]: unknown };
  const value = Object.prototype.hasOwnProperty.call(table, languageId) ? table[languageId] : table["*"];
  return value === undefined || value === null ? true : Boolean(value);
}

/**
 * Decides when to send codefill/didFocus ("the user is now looking at this cursor"; the server
 * evaluates the prompt there in the background). The server skips a focus on the line it saw
 * last, so the client only avoids flooding it:
 * - "active": an editor became the active one: sent unless it is the document and line sent last;
 * - "rest": the cursor came to rest: sent only when its line differs from the line last sent
 *   for that document.
 * A position that is sent is remembered; `reset` forgets everything (a new server).
 */
export class FocusTracker {
  private lines = new Map<string, number>();
  private last: { uri: string; line: number } | undefined;

  shouldSend(uri: string, line: number, why: "active" | "rest"): boolean {
    const same = why === "active"
      ? this.last !== undefined && this.last.uri === uri && this.last.line === line
      : this.lines.get(uri) === line;
    if (same) {
      return false;
    }
    this.lines.set(uri, line);
    this.last = { uri, line };
    return true;
  }

  /** The document was closed. */
  forget(uri: string): void {
    this.lines.delete(uri);
    if (this.last?.uri === uri) {
      this.last = undefined;
    }
  }

  reset(): void {
    this.lines.clear();
    this.last = undefined;
  }
}

/**
 * The prefill counters of a `codefill/status` answer for Show Status: "prefill: focus 3, done 2,
 * …" (focus and done first, then the other numbers), or undefined when the server has none.
 */
export function prefillSummary(prefill: unknown): string | undefined {
  if (prefill === null || typeof prefill !== "object" || Array.isArray(prefill)) {
    return undefined;
  }
  const p = prefill as { [key: string]: unknown };
  const keys = ["focus", "done", ...Object.keys(p).filter((k) => k !== "focus" && k !== "done")];
  const parts = keys.filter((k) => typeof p[k] === "number" && Number.isFinite(p[k]))
    .map((k) => `${k.replace(/_/g, " ")} ${Math.round(p[k] as number)}`);
  return parts.length > 0 ? `prefill: ${parts.join(", ")}` : undefined;
}
