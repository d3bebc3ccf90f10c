// codefill for VS Code: starts `codefill serve` over stdio with vscode-languageclient, shows its
// suggestions as inline completions (ghost text): the first codefill/partial text at once, then
// the final answer with one item per ranked candidate (VS Code's Alt+] / Alt+[ cycle them),
// reports accepts with codefill/didAccept and where the user is looking with codefill/didFocus
// (the server prepares the prompt there), shows the server's state in the status bar, and picks,
// pulls (codefill/models, codefill/pullModel with $/progress) and sets the model.
import * as fs from "node:fs";
import * as vscode from "vscode";
import {
  CloseAction,
  ErrorAction,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
  WorkDoneProgress,
} from "vscode-languageclient/node";
import {
  candidatesOf,
  findServer,
  FOCUS_ACTIVE_MS,
  FOCUS_REST_MS,
  FocusTracker,
  languageEnabled,
  ModelPick,
  modelPicks,
  ModelsResult,
  modelSettingTarget,
  ModelState,
  pickerPlaceholder,
  prefillSummary,
  PullProgress,
  pullOutcome,
  refreshAfterAnswer,
  remoteOf,
  requeryCommands,
  RestartPolicy,
  ServerCommand,
  Settings,
  Shown,
  shownAt,
  StatusModel,
  statusPollMs,
  statusView,
  Stream,
  Streams,
  StatusInput,
  toServerSettings,
  typedThrough,
} from "./logic";

const RETRIGGER_MS = 60;
const STREAM_WAIT_MS = 30_000;

interface CompleteResult {
  text: string;
  /** the ranked suggestion texts (candidates[0] is text); absent when there is one */
  candidates?: string[];
  /** alternatives to `text` are being ranked: asked again at the same place, the server answers
   * with all of them once they are */
  moreCandidates?: boolean;
  source?: string;
  reason?: string;
}

/** The answer to codefill/pullModel (lsp_server/model_requests.py). */
interface PullResult {
  name: string;
  path: string;
  sizeBytes?: number;
  sha256?: string;
  template?: string;
}

interface StatusResult {
  version?: string;
  model?: StatusModel & { state?: ModelState; model?: string; template?: string; architecture?: string;
    remote?: { consecutive_failures?: number; errors?: number; retries?: number; fallbacks?: number } };
  completion?: {
    counters?: { [k: string]: number };
    last_latency_ms?: number | null;
    last_empty_reason?: string;
  };
  settings?: { enabled?: boolean; mode?: string };
  prefill?: { [k: string]: unknown };
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

class Codefill {
  private client: LanguageClient | undefined;
  private readonly output = vscode.window.createOutputChannel("codefill", { log: true });
  private readonly statusItem = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  private readonly streams = new Streams();
  private readonly cancellers = new Map<string, vscode.CancellationTokenSource>();
  private readonly retried = new Set<string>();
  private readonly restarts: RestartPolicy;
  private state: StatusInput = { enabled: true, generating: false, model: "starting" };
  private pollTimer: NodeJS.Timeout | undefined;
  /** Bumped by each pollStatus(): an older poll loop stops at its next turn. */
  private pollGeneration = 0;
  private lastStatusAt = 0;
  /** After a change that reloads the server's backend: poll at least until then (ms epoch). */
  private pollAtLeastUntil = 0;
  private retriggerTimer: NodeJS.Timeout | undefined;
  /** The stream the pending retrigger is for (the latest asked). */
  private retriggerFor: { stream: Stream; always: boolean } | undefined;
  /** The last query of the provider (streaming): its stream key and whether it was explicit. */
  private lastQuery: { key: string; explicit: boolean } | undefined;
  /** After typing through the candidate shown, per document: where, and what is left of it
   * (`typedThrough`). */
  private readonly expected = new Map<string, Shown & { key: string }>();
  private stopping = false;
  private server: ServerCommand | undefined;
  /** Models being pulled now (one pull of a model at a time). */
  private readonly pulling = new Set<string>();
  private pullSeq = 0;
  /** Where the user is looking, told to the server (codefill/didFocus). */
  private readonly focus = new FocusTracker();
  private focusTimer: NodeJS.Timeout | undefined;
  /** The pending focus is for an editor that became active (not only a cursor move). */
  private focusActive = false;

  constructor(private readonly context: vscode.ExtensionContext) {
    this.restarts = new RestartPolicy(this.config().get<number>("server.maxRestarts", 3));
    this.statusItem.command = "codefill.showStatus";
    this.statusItem.name = "codefill";
    context.subscriptions.push(this.output, this.statusItem);
    const cmd = (name: string, fn: (...args: unknown[]) => unknown) =>
      context.subscriptions.push(vscode.commands.registerCommand(name, fn));
    cmd("codefill.toggle", () => this.toggle());
    cmd("codefill.acceptNextWord", () => this.acceptPart("editor.action.inlineSuggest.acceptNextWord"));
    cmd("codefill.acceptNextLine", () => this.acceptPart("editor.action.inlineSuggest.acceptNextLine"));
    cmd("codefill.showStatus", () => this.showStatus());
    cmd("codefill.showLog", () => this.output.show(true));
    cmd("codefill.restartServer", () => this.restart());
    cmd("codefill.chooseModel", () => this.chooseModel());
    cmd("codefill.didAccept", (uri: unknown) => this.didAccept(typeof uri === "string" ? uri : undefined));
    cmd("codefill.showNext", () => this.cycle(1));
    cmd("codefill.showPrevious", () => this.cycle(-1));
    context.subscriptions.push(
      vscode.workspace.onDidChangeConfiguration((e) => this.onConfigChanged(e)),
      vscode.workspace.onDidChangeTextDocument((e) => {
        if (e.contentChanges.length > 0) {
          const uri = e.document.uri.toString();
          // Typed through the candidate shown: the next answer keeps it first.
          const shown = shownAt(this.streams.current(uri)) ?? this.expected.get(uri);
          const next = typedThrough(uri, shown, e.contentChanges, e.document.version);
          if (next) {
            this.expected.set(uri, next);
          } else {
            this.expected.delete(uri);
          }
          this.dropStream(uri);
        }
      }),
      vscode.workspace.onDidCloseTextDocument((d) => {
        this.dropStream(d.uri.toString());
        this.expected.delete(d.uri.toString());
        this.focus.forget(d.uri.toString());
      }),
      vscode.window.onDidChangeActiveTextEditor(() => this.scheduleFocus("active")),
      vscode.window.onDidChangeTextEditorSelection((e) => {
        if (e.textEditor === vscode.window.activeTextEditor) {
          this.scheduleFocus("rest");
        }
      }),
      { dispose: () => clearTimeout(this.focusTimer) },
    );
    this.state.enabled = this.enabled();
    this.render();
    this.statusItem.show();
  }

  private config(): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration("codefill");
  }

  private enabled(): boolean {
    return this.config().get<boolean>("completion.enabled", true);
  }

  /** The server's settings tree from the `codefill.*` settings. */
  private serverSettings(scope?: vscode.Uri): Settings {
    const all = JSON.parse(JSON.stringify(vscode.workspace.getConfiguration("codefill", scope))) as Settings;
    return toServerSettings(all);
  }

  private render(): void {
    this.state.generating = this.streams.inFlight > 0;
    const view = statusView(this.state);
    this.statusItem.text = view.text;
    this.statusItem.tooltip = view.tooltip;
    // Screen readers (and the e2e test) get the reason, not just "codefill".
    this.statusItem.accessibilityInformation = { label: view.tooltip };
    this.statusItem.backgroundColor = view.kind === "error"
      ? new vscode.ThemeColor("statusBarItem.errorBackground")
      : view.kind === "warning" ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
  }

  private fail(message: string): void {
    this.state.clientError = message;
    this.output.error(message);
    this.render();
    void vscode.window.showErrorMessage(`codefill: ${message}`, "Open Settings", "Show Log").then((choice) => {
      if (choice === "Open Settings") {
        void vscode.commands.executeCommand("workbench.action.openSettings", "codefill.server");
      } else if (choice === "Show Log") {
        this.output.show(true);
      }
    });
  }

  async start(): Promise<void> {
    const cfg = this.config();
    const found = findServer({
      command: cfg.get<string[]>("server.command", []),
      pythonPath: cfg.get<string>("server.pythonPath", ""),
      defaultInterpreter: vscode.workspace.getConfiguration("python").get<string>("defaultInterpreterPath", "") || "",
      env: process.env,
      workspaceFolders: (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath),
      platform: process.platform,
      isExecutable,
    });
    if ("error" in found) {
      this.fail(found.error);
      return;
    }
    this.server = found;
    this.output.info(`starting ${found.command} ${found.args.join(" ")} (found via ${found.source})`);
    this.state = { enabled: this.enabled(), generating: false, model: "starting" };
    this.render();
    const serverOptions: ServerOptions = {
      command: found.command,
      args: found.args,
      // No transport: plain stdio. (TransportKind.stdio would append --stdio, which
      // `codefill serve` does not take.)
      options: { env: { ...process.env, PYTHONUNBUFFERED: "1" } },
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: "file" }],
      outputChannel: this.output,
      initializationOptions: () => this.serverSettings(),
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue }),
        closed: () => this.onClosed(),
      },
      middleware: {
        provideInlineCompletionItems: (document, position, context, token, next) =>
          this.provide(document, position, context, token, next),
        workspace: {
          configuration: (params) =>
            params.items.map((item) => item.section === "codefill"
              ? this.serverSettings(item.scopeUri ? vscode.Uri.parse(item.scopeUri) : undefined) : null),
        },
      },
    };
    const client = new LanguageClient("codefill", "codefill", serverOptions, clientOptions);
    client.registerProposedFeatures();
    this.client = client;
    client.onNotification("codefill/partial", (p: { streamId: string; text: string }) => this.onPartial(p));
    client.onDidChangeState((e) => {
      if (e.newState === State.Running) {
        this.state.clientError = undefined;
        this.state.model = "starting";
        this.pollStatus();
        // A new server: tell it where the user is looking in the active editor.
        this.focus.reset();
        this.scheduleFocus("active");
      }
      this.render();
    });
    try {
      await client.start();
    } catch (err) {
      this.fail(`could not start ${found.command}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private onClosed() {
    if (this.stopping) {
      return { action: CloseAction.DoNotRestart, handled: true };
    }
    if (this.restarts.shouldRestart()) {
      const msg = `the server stopped; restarting it (${this.restarts.count}/${this.restarts.max})`;
      this.output.warn(msg);
      this.state.model = "starting";
      this.render();
      return { action: CloseAction.Restart, message: `codefill: ${msg}` };
    }
    this.fail(`the server stopped ${this.restarts.max + 1} times within 3 minutes; not restarted again `
      + "(codefill: Restart Server)");
    return { action: CloseAction.DoNotRestart, handled: true };
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.pollGeneration += 1;
    clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    const client = this.client;
    this.client = undefined;
    if (client && client.state !== State.Stopped) {
      try {
        await client.stop(5000);
      } catch (err) {
        this.output.warn(`stopping the server: ${String(err)}`);
      }
    }
    this.stopping = false;
  }

  async restart(): Promise<void> {
    this.output.info("restarting the server");
    await this.stop();
    this.restarts.reset();
    this.state.clientError = undefined;
    await this.start();
  }

  /**
   * Poll codefill/status while there is something to follow: the model loading (progress,
   * reloads) or a remote engine that is failing (until it answers again); see statusPollMs.
   */
  private pollStatus(): void {
    clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    const generation = ++this.pollGeneration;
    const tick = async () => {
      await this.status(false);
      if (generation !== this.pollGeneration) {
        return;
      }
      // The first answers after a settings change may still describe the old backend.
      const ms = statusPollMs(this.state) ?? (Date.now() < this.pollAtLeastUntil ? 1000 : undefined);
      this.pollTimer = ms === undefined ? undefined : setTimeout(() => void tick(), ms);
    };
    void tick();
  }

  /** After an answer: refresh the status in the background when it may have changed. */
  private maybeRefreshStatus(reason: string | undefined): void {
    if (refreshAfterAnswer(this.state, reason, Date.now() - this.lastStatusAt)) {
      this.lastStatusAt = Date.now();
      void this.status();
    }
  }

  /** Ask codefill/status and update the status bar; starts polling when there is a reason. */
  private async status(startPolling = true): Promise<StatusResult | undefined> {
    const client = this.client;
    if (!client || client.state !== State.Running) {
      return undefined;
    }
    try {
      this.lastStatusAt = Date.now();
      const st = await client.sendRequest<StatusResult>("codefill/status", {});
      const wasRemote = this.state.remote;
      this.state.model = st.model?.state;
      this.state.modelError = st.model?.error || undefined;
      this.state.remote = remoteOf(st.model);
      const now = this.state.remote;
      if (now?.health !== wasRemote?.health && (now?.health === "failing" || wasRemote?.health === "failing")) {
        this.output.info(now?.health === "failing"
          ? `remote engine failing: ${now.lastError ?? "unknown error"}` : "remote engine answering again");
      }
      this.render();
      if (startPolling && this.pollTimer === undefined && statusPollMs(this.state) !== undefined) {
        this.pollStatus();
      }
      return st;
    } catch (err) {
      this.output.warn(`codefill/status: ${String(err)}`);
      return undefined;
    }
  }

  // --- where the user is looking -------------------------------------------------------------

  /**
   * An editor became the active one, or the cursor moved: send codefill/didFocus once things
   * are quiet (FOCUS_ACTIVE_MS after a switch, FOCUS_REST_MS after the last cursor move).
   */
  private scheduleFocus(why: "active" | "rest"): void {
    if (why === "active") {
      this.focusActive = true;
    }
    clearTimeout(this.focusTimer);
    this.focusTimer = setTimeout(() => {
      this.focusTimer = undefined;
      const active = this.focusActive;
      this.focusActive = false;
      this.sendFocus(active ? "active" : "rest");
    }, why === "active" ? FOCUS_ACTIVE_MS : FOCUS_REST_MS);
  }

  /** codefill/didFocus for the active editor's cursor, when the server should hear of it. */
  private sendFocus(why: "active" | "rest"): void {
    const editor = vscode.window.activeTextEditor;
    const client = this.client;
    if (!editor || !client || client.state !== State.Running) {
      return;
    }
    const document = editor.document;
    // Only documents the client syncs (documentSelector: file scheme) with completions on.
    if (document.uri.scheme !== "file" || !this.enabled()
        || !languageEnabled(vscode.workspace.getConfiguration("codefill", document.uri).get("completion.languages"),
          document.languageId)) {
      return;
    }
    const position = editor.selection.active;
    if (!this.focus.shouldSend(document.uri.toString(), position.line, why)) {
      return;
    }
    const c2p = client.code2ProtocolConverter;
    // sendNotification first flushes the document's pending didOpen/didChange.
    client.sendNotification("codefill/didFocus", {
      textDocument: c2p.asTextDocumentIdentifier(document),
      position: c2p.asPosition(position),
    }).catch((err: unknown) => this.output.debug(`codefill/didFocus: ${String(err)}`));
    this.output.debug(`focus (${why}) at ${position.line + 1}:${position.character + 1}`);
  }

  private async showStatus(): Promise<void> {
    const actions = ["Show Log", "Restart Server", this.enabled() ? "Turn Off" : "Turn On"];
    let message: string;
    const st = await this.status();
    if (this.state.clientError) {
      message = `codefill: ${this.state.clientError}`;
    } else if (!st) {
      message = "codefill: the server is not running";
    } else {
      const m = st.model ?? {};
      const c = st.completion?.counters ?? {};
      const parts = [
        `codefill ${st.version ?? "?"}: model ${m.state ?? "?"}${m.error ? ` (${m.error})` : ""}`,
        `${m.model ?? "?"} (${m.architecture ?? "?"}, template ${m.template ?? "?"})`,
      ];
      const remote = remoteOf(m);
      if (remote) {
        const r = m.remote ?? {};
        parts.push(`remote engine ${remote.backend}${remote.url ? ` at ${remote.url}` : ""}: ${remote.health}`
          + (remote.lastError ? ` (last error: ${remote.lastError})` : "")
          + `, errors ${r.errors ?? 0}, retries ${r.retries ?? 0}, fallbacks ${r.fallbacks ?? 0}`);
      }
      parts.push(
        `suggestions ${st.settings?.enabled === false ? "off" : "on"}, mode ${st.settings?.mode ?? "?"}`,
        `requests ${c.requests ?? 0}, served ${c.served ?? 0}, model calls ${c.model_calls ?? 0}, `
          + `cache hits ${c.cache_hits ?? 0}, typing-through ${c.typing_through ?? 0}`,
      );
      if (st.completion?.last_latency_ms) {
        parts.push(`last latency ${Math.round(st.completion.last_latency_ms)} ms`);
      }
      if (st.completion?.last_empty_reason) {
        parts.push(`last empty answer: ${st.completion.last_empty_reason}`);
      }
      const prefill = prefillSummary(st.prefill);
      if (prefill) {
        parts.push(prefill);
      }
      message = parts.join(" · ");
    }
    this.output.info(message);
    if (st?.model?.state === "failed" && !remoteOf(st.model)) {
      actions.unshift("Choose Model");  // e.g. engine.model names a model not pulled yet
    }
    const show = this.state.clientError || st?.model?.state === "failed"
      ? vscode.window.showErrorMessage
      : this.state.remote?.health === "failing" ? vscode.window.showWarningMessage
        : vscode.window.showInformationMessage;
    const choice = await show(message, ...actions);
    if (choice === "Show Log") {
      this.output.show(true);
    } else if (choice === "Choose Model") {
      await this.chooseModel();
    } else if (choice === "Restart Server") {
      await this.restart();
    } else if (choice === "Turn Off" || choice === "Turn On") {
      await this.toggle();
    }
  }

  private async toggle(): Promise<void> {
    const on = !this.enabled();
    await this.config().update("completion.enabled", on, vscode.ConfigurationTarget.Global);
    void vscode.window.setStatusBarMessage(`codefill: suggestions ${on ? "on" : "off"}`, 3000);
  }

  private onConfigChanged(e: vscode.ConfigurationChangeEvent): void {
    if (!e.affectsConfiguration("codefill")) {
      return;
    }
    this.state.enabled = this.enabled();
    this.restarts.max = this.config().get<number>("server.maxRestarts", 3);
    this.render();
    if (e.affectsConfiguration("codefill.server")) {
      void this.restart();
      return;
    }
    // The server reloads its backend (local model or remote engine) for these.
    this.pushSettings(e.affectsConfiguration("codefill.engine") || e.affectsConfiguration("codefill.remote")
      || e.affectsConfiguration("codefill.prompt.template"));
    if (!this.state.enabled) {
      for (const id of [...this.cancellers.keys()]) {
        this.cancellers.get(id)?.cancel();
      }
    }
  }

  /** Send the settings to the server; `reloads`: it reloads its backend, follow the status. */
  private pushSettings(reloads: boolean): void {
    const client = this.client;
    if (!client || client.state !== State.Running) {
      return;
    }
    void client.sendNotification("workspace/didChangeConfiguration", {
      settings: { codefill: this.serverSettings() },
    });
    if (reloads) {
      this.state.model = "loading";
      this.render();
      this.pollAtLeastUntil = Date.now() + 10_000;
      this.pollStatus();
    }
  }

  // --- choosing and pulling a model --------------------------------------------------------

  /**
   * codefill: Choose Model: pick a registry model (or the embedded one), pull it with progress
   * in a cancellable notification when it is not pulled yet, then set codefill.engine.model.
   */
  private async chooseModel(): Promise<void> {
    const client = this.client;
    if (!client || client.state !== State.Running) {
      void vscode.window.showErrorMessage(`codefill: the server is not running${
        this.state.clientError ? ` (${this.state.clientError})` : ""}`);
      return;
    }
    let listed: ModelsResult;
    try {
      listed = await client.sendRequest<ModelsResult>("codefill/models", {});
    } catch (err) {
      void vscode.window.showErrorMessage(pullOutcome(err, false).message);
      return;
    }
    const picks = modelPicks(listed);
    const chosen = await vscode.window.showQuickPick(
      picks.map((pick) => ({ label: pick.label, description: pick.description, detail: pick.detail, pick })),
      { title: "codefill: Choose Model", placeHolder: pickerPlaceholder(listed, picks), matchOnDescription: true },
    );
    if (!chosen) {
      return;
    }
    await this.useModel(chosen.pick);
  }

  private async useModel(pick: ModelPick): Promise<void> {
    let path = pick.path;
    if (!pick.pulled) {
      const got = await this.pull(pick.value);
      if (!got) {
        return;
      }
      path = got.path;
    }
    const where = await this.setModel(pick.value);
    const what = pick.value ? `${pick.value} (${path})` : "the embedded default model";
    this.output.info(`engine.model set to ${JSON.stringify(pick.value)} in the ${where} settings`);
    void vscode.window.showInformationMessage(`codefill: using ${what}; codefill.engine.model set in the ${where} settings`);
  }

  /** Write codefill.engine.model; returns "user" or "workspace". */
  private async setModel(value: string): Promise<string> {
    const cfg = this.config();
    const target = modelSettingTarget(cfg.inspect<string>("engine.model"));
    const unchanged = cfg.get<string>("engine.model", "") === value;
    await cfg.update("engine.model", value,
      target === "workspace" ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global);
    if (unchanged) {
      // No change event: the server loads the model again only if it failed (not pulled yet).
      this.pushSettings(this.state.model === "failed");
    }
    return target === "workspace" ? "workspace" : "user";
  }

  /** codefill/pullModel in a cancellable progress notification; undefined when it did not finish. */
  private async pull(name: string): Promise<PullResult | undefined> {
    const client = this.client;
    if (!client || client.state !== State.Running) {
      void vscode.window.showErrorMessage("codefill: the server is not running");
      return undefined;
    }
    if (this.pulling.has(name)) {
      void vscode.window.showInformationMessage(`codefill: ${name} is being pulled already`);
      return undefined;
    }
    this.pulling.add(name);
    const token = `codefill-pull-${process.pid}-${++this.pullSeq}`;
    const progress = new PullProgress();
    this.output.info(`pulling ${name}`);
    let outcome: ReturnType<typeof pullOutcome> | undefined;
    let got: PullResult | undefined;
    try {
      got = await vscode.window.withProgress({
        location: vscode.ProgressLocation.Notification,
        title: `codefill: pulling ${name}`,
        cancellable: true,
      }, async (report, cancel) => {
        const listening = client.onProgress(WorkDoneProgress.type, token, (value) => {
          const step = progress.step(value);
          if (step) {
            report.report(step);
          }
        });
        const cancelling = cancel.onCancellationRequested(() => this.output.info(`cancelling the pull of ${name}`));
        try {
          return await client.sendRequest<PullResult>("codefill/pullModel", { name, workDoneToken: token }, cancel);
        } catch (err) {
          outcome = pullOutcome(err, cancel.isCancellationRequested);
          return undefined;
        } finally {
          cancelling.dispose();
          listening.dispose();
        }
      });
    } finally {
      this.pulling.delete(name);
    }
    if (outcome) {
      this.output.info(`pull of ${name}: ${outcome.message}`);
      void (outcome.kind === "cancelled" ? vscode.window.showInformationMessage(outcome.message)
        : vscode.window.showErrorMessage(outcome.message));
      return undefined;
    }
    if (got) {
      this.output.info(`pulled ${got.name} to ${got.path}`);
    }
    return got;
  }

  // --- inline completions ----------------------------------------------------------------

  private acceptCommand(uri: string): vscode.Command {
    return { command: "codefill.didAccept", title: "codefill: accepted", arguments: [uri] };
  }

  private async provide(
    document: vscode.TextDocument,
    position: vscode.Position,
    context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
    next: (d: vscode.TextDocument, p: vscode.Position, c: vscode.InlineCompletionContext,
      t: vscode.CancellationToken) => vscode.ProviderResult<vscode.InlineCompletionItem[] | vscode.InlineCompletionList>,
  ): Promise<vscode.InlineCompletionItem[] | vscode.InlineCompletionList | undefined | null> {
    if (!this.enabled() || !this.client) {
      return undefined;
    }
    const uri = document.uri.toString();
    if (!this.config().get<boolean>("streaming", true)) {
      const result = await next(document, position, context, token);
      const items = Array.isArray(result) ? result : result?.items ?? [];
      if (items.length === 0) {
        this.maybeRefreshStatus(undefined);
      }
      for (const item of items) {
        item.command = this.acceptCommand(uri);
      }
      return items;
    }
    const key = Streams.key(uri, document.version, position.line, position.character);
    const explicit = context.triggerKind === vscode.InlineCompletionTriggerKind.Invoke;
    this.lastQuery = { key, explicit };
    let stream = this.streams.find(uri, key);
    if (!stream) {
      stream = this.startStream(document, position, key);
      const expected = this.expected.get(uri);
      this.expected.delete(uri);
      if (expected?.key === key) {
        stream.expected = expected.text;
      }
    }
    // The first query answers with the text so far; an explicit one of a suggestion shown
    // already waits for the final answer (VS Code keeps showing the text so far meanwhile).
    const hold = Streams.holds(stream, explicit);
    stream.holding += Number(hold);
    try {
      await Promise.race([
        Streams.wait(stream, STREAM_WAIT_MS, hold),
        new Promise<void>((resolve) => token.onCancellationRequested(() => resolve())),
      ]);
    } finally {
      stream.holding -= Number(hold);
    }
    const texts = Streams.items(stream);
    if (token.isCancellationRequested || texts.length === 0) {
      return undefined;
    }
    // One item while the suggestion streams; once final, one per candidate, the one shown first.
    Streams.show(stream, texts);
    const range = new vscode.Range(position, position);
    return texts.map((text) => new vscode.InlineCompletionItem(text, range, this.acceptCommand(uri)));
  }

  private startStream(document: vscode.TextDocument, position: vscode.Position, key: string): Stream {
    const client = this.client as LanguageClient;
    const uri = document.uri.toString();
    const { stream, replaced } = this.streams.start(uri, key,
      { line: position.line, character: position.character });
    if (replaced) {
      this.cancellers.get(replaced.id)?.cancel();
    }
    const cts = new vscode.CancellationTokenSource();
    this.cancellers.set(stream.id, cts);
    this.render();
    const c2p = client.code2ProtocolConverter;
    const place = { textDocument: c2p.asTextDocumentIdentifier(document), position: c2p.asPosition(position) };
    client.sendRequest<CompleteResult | null>("codefill/complete", {
      ...place,
      streamId: stream.id,
    }, cts.token).then((result) => {
      if (result?.moreCandidates && result.text) {
        // The server ranks the alternatives after serving this text: ask again at the same
        // place (it answers once they are ranked) and finish the stream with all of them, so
        // VS Code is asked once for the final items (the text so far stays shown meanwhile).
        this.fetchCandidates(stream, uri, place, result, cts.token);
        return;
      }
      this.onFinal(stream, uri, result ?? undefined);
    }, (err: unknown) => {
      const cancelled = cts.token.isCancellationRequested;
      if (!cancelled) {
        this.output.warn(`codefill/complete: ${err instanceof Error ? err.message : String(err)}`);
      }
      this.onFinal(stream, uri, undefined);
    });
    return stream;
  }

  /**
   * The server served `first` before ranking its alternatives: ask again at the same place and
   * finish the stream with the whole list (with `first` alone if that fails).
   */
  private fetchCandidates(stream: Stream, uri: string, place: object, first: CompleteResult,
                          token: vscode.CancellationToken): void {
    const client = this.client;
    if (!client) {
      this.onFinal(stream, uri, first);
      return;
    }
    client.sendRequest<CompleteResult | null>("codefill/complete", place, token).then((more) => {
      const texts = candidatesOf(more?.text, more?.candidates);
      this.onFinal(stream, uri, more && texts.length > 1 && texts.includes(first.text)
        ? { ...first, candidates: texts } : first);
    }, () => this.onFinal(stream, uri, first));
  }

  private onPartial(p: { streamId: string; text: string }): void {
    const stream = this.streams.partial(p.streamId, p.text);
    if (stream && Streams.stale(stream)) {
      this.retrigger(stream);
    }
  }

  private onFinal(stream: Stream, uri: string, result: CompleteResult | undefined): void {
    this.cancellers.get(stream.id)?.dispose();
    this.cancellers.delete(stream.id);
    const finished = this.streams.finish(stream.id, result?.text, result?.candidates);
    this.render();
    if (result) {
      this.maybeRefreshStatus(result.reason);
    }
    if (!finished) {
      return;
    }
    // Workaround for the server (0.1.0): a request that adopted an in-flight generation which
    // then diverged from the typed text answers "" with "the document changed" although it did
    // not. Ask once more for the same position.
    if (result && result.text === "" && result.reason === "the document changed"
        && !this.retried.has(stream.key) && this.streams.find(uri, stream.key) === stream) {
      this.retried.add(stream.key);
      if (this.retried.size > 100) {
        this.retried.clear();
      }
      this.streams.drop(uri);
      this.retrigger(stream, true);
      return;
    }
    // The text changed, or more candidates came: a query waiting for the final answer gets them,
    // else VS Code is asked again (explicitly, so its toolbar counts them: "1/3").
    if (Streams.stale(stream)) {
      this.retrigger(stream);
    }
  }

  /**
   * Ask VS Code to query the provider again when the stream's items changed (or `always`: a new
   * stream for the same place), if the cursor is still where the stream was asked for.
   */
  private retrigger(stream: Stream, always = false): void {
    this.retriggerFor = { stream, always };
    if (this.retriggerTimer) {
      return;
    }
    this.retriggerTimer = setTimeout(() => {
      this.retriggerTimer = undefined;
      const asked = this.retriggerFor;
      this.retriggerFor = undefined;
      const editor = vscode.window.activeTextEditor;
      if (!editor || !asked) {
        return;
      }
      const pos = editor.selection.active;
      const key = Streams.key(editor.document.uri.toString(), editor.document.version, pos.line, pos.character);
      if (key !== asked.stream.key || !(asked.always || Streams.stale(asked.stream))) {
        return;
      }
      const commands = requeryCommands(asked.stream, this.lastQuery?.key !== key || this.lastQuery.explicit);
      if (commands.length === 1) {
        void vscode.commands.executeCommand(commands[0]);
      } else if (commands.length > 1) {
        // Back to back in the window (runCommands), with no round trip to this host between.
        void vscode.commands.executeCommand("runCommands", { commands });
      }
    }, RETRIGGER_MS);
  }

  private dropStream(uri: string): void {
    const stream = this.streams.drop(uri);
    if (stream) {
      this.cancellers.get(stream.id)?.cancel();
      this.render();
    }
  }

  private didAccept(uri?: string): void {
    const editor = vscode.window.activeTextEditor;
    const client = this.client;
    if (!editor || !client || client.state !== State.Running) {
      return;
    }
    if (uri && editor.document.uri.toString() !== uri) {
      return;
    }
    const c2p = client.code2ProtocolConverter;
    void client.sendNotification("codefill/didAccept", {
      textDocument: c2p.asTextDocumentIdentifier(editor.document),
      position: c2p.asPosition(editor.selection.active),
    });
    this.output.debug(`accepted at ${editor.selection.active.line + 1}:${editor.selection.active.character + 1}`);
  }

  /**
   * Alt+] / Alt+[: VS Code's showNext / showPrevious, noting which candidate it will show (for
   * typing through it; VS Code does not tell).
   */
  private async cycle(delta: number): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (editor) {
      const uri = editor.document.uri.toString();
      const pos = editor.selection.active;
      const key = Streams.key(uri, editor.document.version, pos.line, pos.character);
      const stream = this.streams.find(uri, key);
      if (stream) {
        Streams.cycle(stream, delta, this.lastQuery?.key !== key || this.lastQuery.explicit);
      }
    }
    await vscode.commands.executeCommand(delta > 0 ? "editor.action.inlineSuggest.showNext"
      : "editor.action.inlineSuggest.showPrevious");
  }

  private async acceptPart(command: string): Promise<void> {
    await vscode.commands.executeCommand(command);
    this.didAccept();
  }
}

let instance: Codefill | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  instance = new Codefill(context);
  await instance.start();
}

export async function deactivate(): Promise<void> {
  await instance?.stop();
  instance = undefined;
}
