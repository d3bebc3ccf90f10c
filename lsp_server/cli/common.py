"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import sys

from ..config import Config, load_config


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and engine")
    g.add_argument("--model", metavar="MODEL", default="",
                   help="GGUF model file, pulled registry name (codefill models) or "
                        "hf://OWNER/REPO/FILE.gguf (default: the embedded Gemma 3 270M)")
    g.add_argument("--adapter", metavar="PATH", default="",
                   help="LoRA adapter GGUF applied to the model ('embedded': the shipped FIM "
                        "adapter; docs/training.md)")
    g.add_argument("--template", default="auto",
                   help="FIM template name or 'auto' (detect from the model)")
    g.add_argument("--no-token-healing", dest="token_healing", action="store_false",
                   default=None, help="generate from the prompt as it ends, even inside a token "
                                      "(prompt.token_healing off)")
    g.add_argument("--order", choices=("auto", "psm", "spm"), default="auto",
                   help="prefix/suffix order for templates trained on both")
    g.add_argument("--threads", type=int, default=0, help="CPU threads (0: automatic)")
    g.add_argument("--ctx-size", type=int, default=4096, help="context window in tokens")
    g.add_argument("--batch-size", type=int, default=512, help="prompt batch size in tokens")
    g.add_argument("--gpu-layers", type=_gpu_layers, default="auto",
                   help="layers to offload to a GPU: auto (all when a GPU build has the memory, "
                        "else none), -1 all, 0 none, or N (docs/gpu.md)")


def add_remote_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("remote engine (docs/deployment.md)")
    g.add_argument("--remote", metavar="URL", default="",
                   help="generate on this llama-server or OpenAI-compatible server instead of "
                        "the local model (API key from $CODEFILL_API_KEY)")
    g.add_argument("--remote-api", choices=("llama-server", "openai"), default="llama-server",
                   help="protocol of the --remote server")
    g.add_argument("--remote-model", metavar="NAME", default="",
                   help="model name sent to the --remote server")
    g.add_argument("--openai-fim", choices=("suffix", "raw"), default="suffix",
                   help="send prompt+suffix, or a raw FIM prompt built with --template")


def add_candidate_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("candidates (docs/settings.md: completion.candidates)")
    g.add_argument("--candidates", type=int, default=None, metavar="N",
                   help="suggestions generated per cursor and ranked, the best one used "
                        "(default: the completion.candidates setting, 5; 1: greedy only)")
    g.add_argument("--no-selector", dest="selector", action="store_false", default=None,
                   help="keep the generation order (greedy first) instead of ranking")


def _gpu_layers(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number, got {value!r}") from None


def config_from_args(args: argparse.Namespace) -> Config:
    """The config tree for these options; invalid values are reported and replaced."""
    data = {
        "engine": {"model": args.model, "adapter": args.adapter, "threads": args.threads,
                   "context_size": args.ctx_size, "batch_size": args.batch_size,
                   "gpu_layers": args.gpu_layers},
        "prompt": {"template": args.template, "fim_order": args.order},
    }
    if getattr(args, "remote", ""):
        data["remote"] = {"url": args.remote, "api": args.remote_api, "model": args.remote_model,
                          "openai_fim": args.openai_fim}
    if getattr(args, "token_healing", None) is not None:
        data["prompt"]["token_healing"] = args.token_healing
    if getattr(args, "max_tokens", None) is not None:
        data["prompt"]["max_tokens"] = args.max_tokens
    if getattr(args, "time_budget_ms", None) is not None:
        data["engine"]["time_budget_ms"] = args.time_budget_ms
    for key in ("candidates", "selector"):
        if getattr(args, key, None) is not None:
            data.setdefault("completion", {})[key] = getattr(args, key)
    config, problems = load_config(data)
    for msg in problems:
        print(f"codefill: warning: {msg}", file=sys.stderr)
    return config


def progress(msg: str) -> None:
    print(f"codefill: {msg}", file=sys.stderr, flush=True)
