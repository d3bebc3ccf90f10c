"""The typed configuration tree.

One tree of dataclasses serves the CLI, the language server (initializationOptions and
workspace/configuration) and the benchmarks. Every field carries its documentation and its
constraints in ``metadata``; :func:`load_config` validates untrusted input against them and
replaces each invalid value by its default with a message, so a bad setting never crashes.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping


def setting(default: Any, doc: str, *, min: float | None = None, max: float | None = None,
            choices: tuple[str, ...] | None = None) -> Any:
    """A config field with its docstring and constraints."""
    meta: dict[str, Any] = {"doc": doc}
    if min is not None:
        meta["min"] = min
    if max is not None:
        meta["max"] = max
    if choices is not None:
        meta["choices"] = choices
    return field(default=default, metadata=meta)


@dataclass
class EngineConfig:
    """How the in-process llama.cpp engine runs the model."""

    model: str = setting("", "The model: a path to a GGUF file, a registry name such as "
                             "'qwen2.5-coder-1.5b' or 'qwen2.5-coder-1.5b:Q4_K_M' (pulled first "
                             "with `codefill models pull NAME`; docs/models.md), or "
                             "'hf://OWNER/REPO/FILE.gguf'; empty means the embedded default model.")
    auto_pull: bool = setting(False, "Download a registry model named in engine.model that is not "
                                     "pulled yet, when the server loads it (off: codefill never "
                                     "uses the network on its own; the message gives the pull "
                                     "command).")
    adapter: str = setting("", "Path to a LoRA adapter GGUF (general.type 'adapter') that "
                               "llama.cpp applies to the model at load; 'embedded' means the FIM "
                               "adapter shipped for the embedded model (opt-in: it does not "
                               "beat prefix-only on HumanEval, docs/default-model.md); "
                               "empty means none. An adapter for another model is refused; one "
                               "that names its FIM template selects it when prompt.template is "
                               "'auto' (docs/training.md).")
    threads: int = setting(0, "CPU threads for evaluation and generation; 0 picks the number of "
                              "CPUs this process may use (at most 8).", min=0, max=256)
    context_size: int = setting(4096, "Context window in tokens (prompt plus generated text); "
                                      "capped at the model's trained context length. Several "
                                      "candidates decode in KV cells held beside it.",
                                min=256, max=1 << 20)
    batch_size: int = setting(512, "Tokens evaluated per llama.cpp decode call while reading the "
                                   "prompt; cancellation is checked between batches.",
                              min=8, max=8192)
    gpu_layers: int | str = setting(
        "auto", "Layers offloaded to the GPU (llama.cpp n_gpu_layers): 'auto' offloads all of "
                "them when llama.cpp was built with a GPU backend and the model fits in the "
                "GPU's free memory, else none; -1 all; 0 none (CPU only); N the first N. A GPU "
                "that runs out of memory falls back to the CPU with a message (docs/gpu.md).",
        min=-1, max=10000, choices=("auto",))
    extra_buffers: str = setting("auto", "llama.cpp's extra CPU weight buffers (weight repacking, "
                                         "AMX): 'on', 'off', or 'auto' = off on CPUs with AMX, "
                                         "where llama.cpp's AMX matmul crashes (llama.cpp#20824).",
                                 choices=("auto", "on", "off"))
    prompt_states: int = setting(3, "Prompts kept in memory when the engine moves to another "
                                    "file's prompt, so that switching back does not evaluate it "
                                    "again (each takes its KV cache's size; codefill/status "
                                    "reports the bytes); 0 keeps none.", min=0, max=32)
    cold_share: float = setting(0.2, "Share of time_budget_ms a request's new prompt tokens may "
                                     "take to evaluate (at the engine's measured speed); a colder "
                                     "prompt is answered from a short one (half that many tokens: "
                                     "no repository context, the text nearest the cursor) while "
                                     "the full one is evaluated in the background. 0 never "
                                     "shortens.", min=0.0, max=1.0)
    kv_reuse: bool = setting(True, "Keep the KV cache of the longest common token prefix between "
                                   "requests (off only to measure what it saves).")
    time_budget_ms: int = setting(5000, "Wall-clock limit of one generation in milliseconds; "
                                        "the text generated so far is returned when it runs out.",
                                  min=50, max=600000)


@dataclass
class RemoteConfig:
    """A serving engine on another machine; the daemon keeps context, templates, caching and
    post-processing local and only sends generation there (docs/deployment.md)."""

    url: str = setting("", "Base URL of a remote engine, e.g. http://gpu-box:8080; empty means the "
                           "local llama.cpp engine. Plain http is for 127.0.0.1 and trusted "
                           "networks only.")
    api: str = setting("llama-server", "Protocol of the remote engine: 'llama-server' (llama.cpp's "
                                       "/infill with repository context as input_extra) or "
                                       "'openai' (/v1/completions: vLLM, Ollama, "
                                       "llama-cpp-python's server).",
                       choices=("llama-server", "openai"))
    openai_fim: str = setting("suffix", "How FIM reaches an OpenAI-compatible server: 'suffix' "
                                        "sends prompt + suffix (the server applies the model's "
                                        "FIM template), 'raw' sends a FIM prompt built with "
                                        "prompt.template (which must then be set).",
                              choices=("suffix", "raw"))
    model: str = setting("", "Model name sent with each request (OpenAI-compatible servers "
                             "serving several models need it).")
    api_key_env: str = setting("CODEFILL_API_KEY", "Name of the environment variable holding the "
                                                   "API key, sent as a Bearer token; the key "
                                                   "itself never goes in settings or logs.")
    context_size: int = setting(4096, "Context window of the remote model in tokens; prompts are "
                                      "budgeted to it (token counts are estimated locally).",
                                min=256, max=1 << 20)
    infill_batch: int = setting(2048, "llama-server's --batch-size (its default is 2048). /infill "
                                      "keeps at most 3/4 of it as prefix tokens and 1/4 as "
                                      "suffix tokens, dropping tokens at the far end, which "
                                      "defeats its prompt cache at every keystroke; the daemon "
                                      "sends prefix and suffix cut at lines inside that window.",
                                min=64, max=1 << 20)
    connect_timeout_ms: int = setting(3000, "Time allowed to connect to the remote engine.",
                                      min=50, max=600000)
    read_timeout_ms: int = setting(30000, "Longest silence allowed on an open response before it "
                                          "counts as failed.", min=50, max=600000)
    verify_tls: bool = setting(True, "Verify the server's TLS certificate for https URLs (turn "
                                     "off only for a self-signed test server).")
    ca_file: str = setting("", "PEM file of extra certificate authorities to trust for https.")
    retries: int = setting(2, "Retries of a request that failed before any text arrived "
                              "(connection refused, 429, 5xx), with exponential backoff.",
                           min=0, max=10)
    backoff_ms: int = setting(250, "First retry delay; it doubles with each retry.",
                              min=0, max=60000)
    fallback: bool = setting(False, "When the remote engine fails, complete with the local "
                                    "engine (engine.model) instead of answering nothing.")


@dataclass
class PromptConfig:
    """How the fill-in-the-middle prompt is built."""

    template: str = setting("auto", "FIM template name, or 'auto' to detect it from the model's "
                                    "vocabulary and metadata (see `codefill models`).")
    fim_order: str = setting("auto", "Order of prefix and suffix: 'psm', 'spm', or 'auto' (the "
                                     "template's preferred order).", choices=("auto", "psm", "spm"))
    max_tokens: int = setting(64, "Maximum number of tokens generated for one suggestion.",
                              min=1, max=4096)
    context_share: float = setting(0.35, "Share of the prompt budget that repository context may "
                                         "use; unused context budget goes to prefix and suffix.",
                                   min=0.0, max=0.9)
    suffix_share: float = setting(0.25, "Share of the remaining budget reserved for the text "
                                        "after the cursor; unused suffix budget goes to the prefix.",
                                  min=0.0, max=0.9)
    sticky_cut: float = setting(0.25, "When the text before the cursor must be cut, move the cut "
                                      "in steps of this share of the prefix budget instead of "
                                      "line by line, so typing keeps the prompt's start and the "
                                      "engine's prompt cache (0: line by line, keeping the most "
                                      "text; each move re-evaluates the whole prompt).",
                                min=0.0, max=0.5)
    token_healing: bool = setting(True, "When the text before the cursor ends inside what the "
                                        "model writes as one token (after a space, inside a "
                                        "word), let the model choose that token: the prompt's "
                                        "last token is taken back and the suggestion's first "
                                        "token must start with its text. Local engine, prompts "
                                        "that end at the cursor (prefix-only, SPM).")


@dataclass
class CompletionConfig:
    """When and how the language server completes."""

    enabled: bool = setting(True, "Offer completions at all (the editors' toggle command flips it).")
    mode: str = setting("auto", "Suggestion length: 'single' (to the end of the line), 'multi' "
                                "(a block), or 'auto' (single-line when the cursor is mid-line or "
                                "the line is a statement, else multi-line).",
                        choices=("auto", "single", "multi"))
    debounce_min_ms: int = setting(20, "Shortest wait after a keystroke before the model is asked; "
                                        "cache hits are served without waiting.", min=0, max=2000)
    debounce_max_ms: int = setting(150, "Longest wait; the debounce adapts between the two to the "
                                        "typing speed (fast typing waits longer).", min=0, max=5000)
    languages: dict = setting(None, "Per-language switch by LSP languageId, e.g. {\"markdown\": "
                                    "false}; \"*\" sets the default. Empty: every language on.")
    cache: bool = setting(True, "Serve repeated and typed-through suggestions from the cache and "
                                "from in-flight generations (off only to measure what it saves).")
    speculative: bool = setting(True, "After a suggestion is accepted, generate the next one in "
                                      "the background so it is ready when asked for.")
    prefill: bool = setting(True, "When the user looks at a place in a file (the editor's "
                                  "codefill/didFocus: a file opened or made active, the cursor "
                                  "resting on another line), evaluate the prompt a suggestion "
                                  "there needs in the background, so the first one is fast; any "
                                  "request preempts it (docs/protocol.md).")
    candidates: int = setting(5, "Suggestions generated per request, ranked best first (the "
                                 "editors cycle through them: Alt+] / Alt+[ in VS Code and "
                                 "Neovim). 1: the greedy suggestion only. The alternatives are "
                                 "decoded as parallel sequences that share the prompt.",
                              min=1, max=8)
    selector: bool = setting(True, "Rank the candidates by what the model could not read (the "
                                   "likelihood of the code after the cursor following each, a "
                                   "syntax check of the file with it in place); off: the "
                                   "greedy suggestion first, then the others as generated.")
    secret_files_allowed: str = setting(
        "", "File names that look like secrets (the index's secret rules: .env*, keys, "
            "certificates, credential files) in which codefill completes anyway: comma-separated "
            "globs matched against the file name, e.g. '.env.example'. No other such document "
            "ever reaches a model; secret values inside any text are masked either way.")
    log_level: str = setting("info", "Level of the server's window/logMessage output; 'debug' logs "
                                     "each request's decisions.",
                             choices=("error", "warning", "info", "debug"))


@dataclass
class ContextConfig:
    """Repository context: the workspace files a prompt carries besides the current one."""

    enabled: bool = setting(True, "Index the workspace and add the files the current file "
                                  "imports (and its test partner and importers) to prompts.")
    max_files: int = setting(12, "Context files in one prompt at most.", min=0, max=200)
    max_distance: int = setting(3, "Import hops followed from the current file.", min=1, max=16)
    whole_distance: int = setting(1, "Files at most this many hops away go in whole when they "
                                     "fit; farther ones (and big ones) as outlines.",
                                  min=0, max=16)
    test_pairing: bool = setting(True, "Add the current file's unit-test partner (foo.py ↔ "
                                       "test_foo.py, foo.ts ↔ foo.test.ts, foo.go ↔ foo_test.go).")
    importers: bool = setting(True, "Add files that import the current file, after its "
                                    "dependencies.")
    max_file_bytes: int = setting(262144, "Files larger than this many bytes are not indexed.",
                                  min=1024, max=1 << 26)
    max_index_files: int = setting(200000, "Files indexed per workspace root at most; the rest "
                                           "of a huge tree is skipped with a warning.",
                                   min=1, max=10_000_000)
    ignore: str = setting("", "Extra ignore patterns in .gitignore syntax, comma-separated, "
                              "relative to each workspace root (on top of .gitignore and the "
                              "built-in ignores).")
    watch: bool = setting(True, "Watch the workspace for changes on disk (git checkouts, "
                                "codegen, other editors).")
    debounce_ms: int = setting(150, "Quiet time after a burst of file changes before the index "
                                    "is updated, in milliseconds.", min=0, max=60000)


@dataclass
class Config:
    """Root of all codefill settings."""

    engine: EngineConfig = field(default_factory=EngineConfig,
                                 metadata={"doc": "The local llama.cpp engine."})
    remote: RemoteConfig = field(default_factory=RemoteConfig,
                                 metadata={"doc": "A remote engine (llama-server, OpenAI-compatible)."})
    prompt: PromptConfig = field(default_factory=PromptConfig,
                                 metadata={"doc": "Prompt construction."})
    context: ContextConfig = field(default_factory=ContextConfig,
                                   metadata={"doc": "Repository context from the import graph."})
    completion: CompletionConfig = field(default_factory=CompletionConfig,
                                         metadata={"doc": "The language server's behaviour."})

    def language_enabled(self, language_id: str) -> bool:
        """Whether completions are on for ``language_id``."""
        table = self.completion.languages or {}
        return bool(table.get(language_id, table.get("*", True)))


def _type_ok(value: Any, typ: Any) -> bool:
    if isinstance(typ, types.UnionType):
        return any(_type_ok(value, t) for t in typing.get_args(typ))
    if typ is bool:
        return isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ is str:
        return isinstance(value, str)
    if typ is dict:  # tables of per-name booleans (completion.languages)
        return value is None or (isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, bool) for k, v in value.items()))
    return isinstance(value, typ)


def _check(value: Any, f: dataclasses.Field, typ: Any, name: str) -> str | None:
    """Return why ``value`` is invalid for field ``f``, or None when it is valid."""
    meta = f.metadata
    if not _type_ok(value, typ):
        kind = "a table of true/false values" if typ is dict else \
            f"a number or one of {', '.join(meta['choices'])}" \
            if isinstance(typ, types.UnionType) else typ.__name__
        return f"setting '{name}' must be {kind}, got {value!r}"
    numeric = isinstance(value, (int, float))  # bounds hold for numbers, choices for names
    if "min" in meta and numeric and value < meta["min"]:
        return f"setting '{name}' must be ≥ {meta['min']}, got {value!r}"
    if "max" in meta and numeric and value > meta["max"]:
        return f"setting '{name}' must be ≤ {meta['max']}, got {value!r}"
    if "choices" in meta and not numeric and value not in meta["choices"]:
        either = "a number or " if isinstance(typ, types.UnionType) else ""
        return f"setting '{name}' must be {either}one of {', '.join(meta['choices'])}, got {value!r}"
    return None


def _load(cls: type, data: Mapping[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        f = fields.get(key)
        if f is None:
            problems.append(f"unknown setting '{name}' (ignored); known: "
                            f"{', '.join(prefix + k for k in fields)}")
            continue
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, Mapping):
                problems.append(f"setting '{name}' must be a table of settings, got {value!r}")
                continue
            kwargs[key] = _load(typ, value, f"{name}.", problems)
            continue
        why = _check(value, f, typ, name)
        if why:
            problems.append(f"{why}; using the default {f.default!r}")
            continue
        kwargs[key] = float(value) if typ is float else dict(value) if typ is dict and value \
            else value
    return cls(**kwargs)


def load_config(data: Mapping[str, Any] | None) -> tuple[Config, list[str]]:
    """Build a :class:`Config` from untrusted nested mappings.

    Returns the config and one message per ignored or replaced value; never raises for bad
    values (a non-mapping root is reported too).
    """
    problems: list[str] = []
    if data is None:
        return Config(), problems
    if not isinstance(data, Mapping):
        return Config(), [f"settings must be a table, got {data!r}; using defaults"]
    return _load(Config, data, "", problems), problems


def describe_settings(cls: type = Config, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted name, default, doc) for every leaf setting, for docs and editor manifests."""
    rows: list[tuple[str, Any, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            rows.extend(describe_settings(typ, f"{prefix}{f.name}."))
        else:
            rows.append((f"{prefix}{f.name}", f.default, f.metadata.get("doc", "")))
    return rows


REPO_DOC_HINT = "docs/settings.md is stale: run `python -m lsp_server.config > docs/settings.md`"


def settings_markdown() -> str:
    """docs/settings.md: every setting with its default and documentation."""
    lines = ["# Settings", "",
             "Generated from `lsp_server/config.py` by `python -m lsp_server.config > "
             "docs/settings.md`.", "",
             "The CLI takes the engine and prompt settings as options; the language server takes "
             "the same tree in `initializationOptions` and `workspace/configuration` (section "
             "`codefill`). Invalid values are reported and replaced by their defaults.", "",
             "| setting | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | `{default!r}` | {doc} |" for name, default, doc in describe_settings()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
