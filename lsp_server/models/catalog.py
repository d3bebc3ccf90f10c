"""What the registry offers on this machine: rows with their pulled state, expected speed, and the
model to recommend (for `codefill models`, `codefill doctor` and the editors' model pickers).

Expected speeds come from ``speeds.json``: prompt and generation tokens/s measured on a 2-core
machine with same-shape random-weight GGUFs (bench/model_shapes.py; docs/models.md). Generation
on a CPU is bound by memory bandwidth, so tokens/s × file bytes is about constant across models
of one quantization family; prompt evaluation is bound by arithmetic, so tokens/s × parameters
is. A model's estimate is the median of those products over the measured shapes, divided by its
own size (or parameters), then scaled by the cores this process may use.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .registry import HubFile, RegistryModel, registry

SPEEDS_FILE = "speeds.json"
#: What a completion needs to feel live on a CPU: a first line within about a second of a
#: 1,000-token prompt change, and a line of 20 tokens within about a second.
CPU_FLOOR = {"prompt_tps": 300.0, "gen_tps": 15.0}
#: Share of RAM a model may take.
MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class Machine:
    """What a recommendation depends on."""

    cores: int
    memory_bytes: int
    gpu_free_bytes: int = 0
    """Free memory of the largest GPU device llama.cpp can offload to (0: none)."""

    @staticmethod
    def this() -> "Machine":
        from ..engine.gpu import devices
        from ..engine.llama_loader import default_threads

        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            memory = 0
        gpu = max((d.free_bytes for d in devices() if d.kind == "GPU"), default=0)
        return Machine(cores=default_threads(), memory_bytes=memory, gpu_free_bytes=gpu)


@functools.lru_cache(maxsize=1)
def _speeds() -> tuple[int, list[dict[str, Any]]]:
    """(threads measured with, rows with both speeds) from speeds.json."""
    try:
        text = resources.files(__package__).joinpath(SPEEDS_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:  # a source tree without the measurements: no estimates
        return 1, []
    data = json.loads(text)
    return int(data["threads"]), [r for r in data["rows"] if r.get("prompt_tps") and
                                  r.get("gen_tps")]


def _family(quant: str) -> str:
    """Quantizations with similar kernels share a speed constant."""
    return "Q8_0" if quant.upper() in ("Q8_0", "F16", "BF16") else "K"


#: Memory per file byte when no measurement covers the file's quantization family.
FALLBACK_MEMORY_RATIO = 2.0


def memory_needed(f: HubFile) -> int:
    """Peak memory to run ``f`` in the daemon (weights, repacked weights, KV cache and compute
    buffers at the default 4,096-token context): its size times the median peak-RSS-to-file
    ratio measured for its quantization family (Q4_K_M files are repacked at load, which about
    doubles them; docs/models.md)."""
    _, measured = _speeds()
    ratios = [r["peak_rss_bytes"] / r["file_bytes"] for r in measured
              if _family(r["type"]) == _family(f.quant) and r.get("peak_rss_bytes")]
    return int(f.size_bytes * (statistics.median(ratios) if ratios else FALLBACK_MEMORY_RATIO))


def expected_speed(model: RegistryModel, f: HubFile, cores: int) -> tuple[float, float] | None:
    """(prompt tok/s, generation tok/s) to expect on ``cores`` CPU cores, or None (no data)."""
    threads, measured = _speeds()
    # More cores help until memory bandwidth runs out; count at most 8.
    scale = min(max(cores, 1), 8) / threads
    same = [r for r in measured if r["type"] == f.quant
            and abs(r["parameters"] - model.parameters) <= 0.03 * model.parameters]
    if same:  # this very shape was measured
        return same[0]["prompt_tps"] * scale, same[0]["gen_tps"] * scale
    rows = [r for r in measured if _family(r["type"]) == _family(f.quant)] or measured
    if not rows or not f.size_bytes:
        return None
    prompt_k = statistics.median(r["prompt_tps"] * r["parameters"] for r in rows)
    gen_k = statistics.median(r["gen_tps"] * r["file_bytes"] for r in rows)
    return prompt_k / model.parameters * scale, gen_k / f.size_bytes * scale


def rows(machine: Machine | None = None) -> list[dict[str, Any]]:
    """One row per registry model, with each quantization's file, memory, speed and state."""
    from .pull import pulled

    m = machine or Machine.this()
    best = recommend(m)
    out = []
    for model in registry().values():
        quants = []
        for q, f in model.files.items():
            have = pulled(f)
            speed = expected_speed(model, f, m.cores)
            quants.append({
                "quant": q, "repo": f.repo, "file": f.file, "reference": f.reference,
                "size_bytes": f.size_bytes, "memory_bytes": memory_needed(f),
                "pulled": have is not None, "path": str(have.path) if have else "",
                "prompt_tps": round(speed[0]) if speed else None,
                "gen_tps": round(speed[1], 1) if speed else None,
            })
        out.append({
            "name": model.name, "title": model.title, "family": model.family,
            "parameters": model.parameters, "license": model.license,
            "license_url": model.license_url, "gated": model.gated,
            "context_length": model.context_length, "template": model.template,
            "for": model.audience, "default_quant": model.default_quant, "notes": model.notes,
            "recommended": best is not None and best[0].name == model.name,
            "recommended_quant": best[1].quant if best and best[0].name == model.name else "",
            "quantizations": quants,
        })
    return out


def recommend(machine: Machine) -> tuple[RegistryModel, HubFile, str] | None:
    """The largest registry model this machine runs well, with the reason in words.

    With a GPU llama.cpp can use: the largest file that ``engine.gpu_layers = 'auto'`` offloads
    whole (:func:`..engine.gpu.needed_bytes` within its free memory). On the CPU: the
    largest file that fits in half the RAM and still reaches :data:`CPU_FLOOR` speed; when none
    does, the fastest one.
    """
    candidates = [(m, f) for m in registry().values() for f in m.files.values() if f.size_bytes]
    if not candidates:
        return None
    if machine.gpu_free_bytes:
        from ..engine.gpu import needed_bytes

        # The rule engine.gpu_layers 'auto' offloads by, so the pick is offloaded whole.
        fits = [(m, f) for m, f in candidates
                if needed_bytes(f.size_bytes) <= machine.gpu_free_bytes]
        if fits:
            m, f = max(fits, key=lambda mf: (mf[1].size_bytes, mf[0].parameters))
            return m, f, (f"fits in the GPU's {machine.gpu_free_bytes / 2**30:.1f} GiB free "
                          "memory (engine.gpu_layers 'auto' offloads it)")
    ram = machine.memory_bytes * MEMORY_SHARE if machine.memory_bytes else float("inf")
    scored = []
    for m, f in candidates:
        speed = expected_speed(m, f, machine.cores)
        if speed is not None and memory_needed(f) <= ram:
            scored.append((m, f, speed))
    if not scored:
        return None
    live = [(m, f, s) for m, f, s in scored
            if s[0] >= CPU_FLOOR["prompt_tps"] and s[1] >= CPU_FLOOR["gen_tps"]]
    if live:
        # The largest model that is fast enough; among its files the larger (better) one.
        m, f, s = max(live, key=lambda x: (x[0].parameters, x[1].size_bytes))
        why = "the largest model fast enough on"
    else:
        m, f, s = max(scored, key=lambda x: (x[2][1], -x[0].parameters))
        why = "no registry model reaches live speed here; the fastest on"
    return m, f, (f"{why} {machine.cores} CPU thread(s): about {s[0]:.0f} prompt tok/s and "
                  f"{s[1]:.0f} generated tok/s")


def registry_markdown() -> str:
    """The registry as the table in docs/models.md (kept equal by a test)."""
    lines = ["| name | model | params | quantizations (size; default first) | license | "
             "template | context | for |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in registry().values():
        order = [m.default_quant] + [q for q in m.files if q != m.default_quant]
        files = ", ".join(f"[{q}](https://huggingface.co/{m.files[q].repo}) "
                          f"{m.files[q].size_bytes / 1e9:.2f} GB" for q in order)
        lic = f"[{m.license}]({m.license_url})" + (" (gated)" if m.gated else "")
        lines.append(f"| `{m.name}` | {m.title} | {m.parameters / 1e9:.2f}B | {files} | {lic} | "
                     f"`{m.template}` | {m.context_length:,} | {m.audience} |")
    return "\n".join(lines) + "\n"


def docs_with_registry(text: str) -> str:
    """docs/models.md's text with the table between its registry markers regenerated."""
    start, end = "<!-- registry:start -->\n", "<!-- registry:end -->"
    i, j = text.index(start) + len(start), text.index(end)
    return text[:i] + registry_markdown() + text[j:]
