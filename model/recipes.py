"""The settings of a training run and the recipes that give a new run its starting settings.

There is one trainer (:mod:`model.train`). A recipe says what differs between the runs it makes:
the model family (:mod:`model.families`: how the model and tokenizer are built or loaded, the
loss, what is exported), where the data comes from (:mod:`model.data.loaders`), whether all
weights train or only LoRA adapters on a frozen base, which checkpoint layout the run writes
(:mod:`model.train_state`) and the defaults of its settings. ``codefill train --recipe NAME``
picks one; options given on the command line override its defaults.

=====================  ======  ========  =================================  ===========
recipe                 family  data      weights                            checkpoints
=====================  ======  ========  =================================  ===========
``gemma``              gemma   tree      all (LoRA when ``lora_rank`` > 0)  state
``gemma-lora``         gemma   tree      LoRA rank 8 on ``init_from``       state
``gemma3-fim``         gemma3  licensed  LoRA rank 8 on attention           steps
``gemma3-fim-editor``  gemma3  licensed  LoRA rank 8 on attention           steps
``gemma3-fim-gpu``     gemma3  licensed  LoRA rank 16 on attention and MLP  steps
=====================  ======  ========  =================================  ===========

``gemma3-fim-editor`` differs from ``gemma3-fim`` in its data: middles cut where an editor asks
(line-aligned), SPM-heavy, 256-token examples; and in its schedule and directory.
``gemma3-fim-gpu`` is the editor recipe sized for one GPU (:mod:`model.bundle`): the same
examples (so rows packed for the editor recipe serve it), 32 rows a step, a schedule fitted to
the time budget, more capacity, checkpoints every 2.5 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from .lora import DEFAULT_TARGETS
from .train_state import saved_config

if TYPE_CHECKING:
    from .data.dataset import DataConfig

ROOT = Path(__file__).resolve().parent.parent
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
GEMMA3_OUT = ROOT / "model" / "checkpoints" / "gemma3-270m-fim"
"""Where the committed Gemma 3 FIM run lives (the editor recipe adds ``-editor``)."""
FIGURES = ROOT / "docs" / "figures"


@dataclass
class TrainConfig:
    """Every setting of a run. The defaults are the ``gemma`` recipe's; :func:`config_for`
    starts from another recipe's."""

    recipe: str = "gemma"
    corpus: str = ""
    """Root of the source tree to train on (recipes whose data is a tree)."""
    out_dir: str = ""
    model: str = "tiny"
    """A named config (``tiny``, ``small``, ``codegemma-2b``) for training from scratch."""
    init_from: str | None = None
    """The weights to start from: a Hugging Face Gemma checkpoint directory (its own tokenizer
    is used), or for the Gemma 3 family a GGUF (None: the embedded model)."""
    tokenizer: str | None = None
    """Directory holding tokenizer.model; default: train one on the corpus (from scratch)."""
    vocab_size: int = 4096
    template: str = "codegemma"
    """The daemon's FIM template the examples are laid out in."""
    seq_len: int = 512
    example_len: int | None = None
    """Longest example in tokens (None: seq_len); shorter ones pack several to a row."""
    micro_batch: int = 4
    grad_accum: int = 1
    steps: int = 1000
    """Length of the schedule (the cosine ends here)."""
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    clip: float = 1.0
    bf16: bool = True
    fim_rate: float = 0.9
    spm_rate: float = 0.5
    line_rate: float = 0.0
    """Share of FIM examples cut where an editor asks (line-aligned middles of 1..max_lines)."""
    max_lines: int = 8
    repo_context: bool = True
    middle_loss: bool = False
    """Train on the middle and its end token only, not on the prompt."""
    eval_share: float = 0.02
    eval_every: int = 100
    eval_rows: int = 16
    save_every: int = 200
    keep: int = 2
    """Step checkpoints kept in ``out_dir`` (the newest ones)."""
    log_every: int = 10
    seed: int = 0
    lora_rank: int = 0
    lora_alpha: float = 16.0
    targets: tuple[str, ...] = DEFAULT_TARGETS
    """The linear layers LoRA wraps."""
    time_limit: float | None = None
    """Seconds of training after which the run stops (checkpointed and exported) early."""
    save_minutes: float | None = None
    """Also checkpoint whenever this many minutes have passed since the last checkpoint."""
    fit_schedule: bool = False
    """With ``time_limit``: shorten ``steps`` early in the run so that the learning-rate
    schedule ends when the time does (a run of fixed minutes on a machine of unknown speed)."""
    device: str = "cpu"
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (:mod:`model.device`)."""
    packed: str | None = None
    """Train on the rows written ahead by ``python -m model.data.packed`` in this directory:
    no corpus is read and no tokenizer loaded (:mod:`model.data.packed`)."""
    adapter_out: str | None = None
    """At every checkpoint also write the llama.cpp adapter here (families that export one) and,
    beside it with ``.pt``, the LoRA tensors without the optimizer state."""
    threads: int | None = None
    max_files: int | None = None
    export: bool = True
    """Write the Hugging Face checkpoint (``out_dir/hf``) at the end (families that export)."""
    stop_after: int | None = None
    """Stop (checkpointed) after this step although ``steps`` sets the schedule (tests, pauses)."""
    csv: str | None = None
    """Where the step / loss / eval-loss / tokens table is (re)written at every checkpoint."""
    venv: str | None = None
    """The virtual environment whose packages the licensed corpus reads (None: ``.venv``)."""
    bench_dir: str | None = None
    """Evaluation data whose problems are kept out of the licensed corpus."""


CONFIG_FIELDS = frozenset(f.name for f in fields(TrainConfig))
RUN_LOCAL = ("out_dir", "csv", "threads", "time_limit", "stop_after", "init_from", "venv",
             "bench_dir", "device", "save_minutes", "adapter_out", "packed", "eval_every", "save_every",
             "log_every")
"""Settings of one invocation, not of the run: a resumed run that keeps its saved settings
still takes these from the command line. None of them changes the updates (evaluations and
checkpoints read the weights, they draw no random numbers), so a run can move between machines
and change how often it evaluates."""


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    family: str
    """``gemma`` or ``gemma3`` (:data:`model.families.FAMILIES`)."""
    data: str
    """``tree`` (the source tree in ``corpus``) or ``licensed`` (stdlib + venv packages)."""
    lora_only: bool
    """Only LoRA adapters train (``lora_rank`` must be positive); else all weights unless
    ``lora_rank`` asks for adapters."""
    checkpoints: str
    """``state`` (one ``trainer_state.pt``: the whole model) or ``steps`` (``step-NNNNNN.pt``:
    the LoRA tensors only, small enough to commit)."""
    keeps_settings: bool
    """A resumed run keeps the settings saved in its checkpoint (only :data:`RUN_LOCAL` ones
    follow the command line), so a plain re-run continues the same schedule."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Settings that differ from :class:`TrainConfig`'s defaults."""


_GEMMA3: dict[str, Any] = {
    # CodeGemma's data recipe on Gemma 3 270M: uniform character cuts, PSM and SPM half each,
    # one example per 512-token row; 5000 steps x 4 rows x 512 tokens is about 10M tokens.
    "template": "gemma3-fim", "middle_loss": True, "micro_batch": 1, "grad_accum": 4,
    "steps": 5000, "lr": 3e-4, "warmup": 30, "weight_decay": 0.0, "eval_every": 10,
    "save_every": 10, "log_every": 1, "lora_rank": 8, "targets": ATTENTION, "threads": 1,
    "out_dir": str(GEMMA3_OUT), "csv": str(FIGURES / "gemma3_fim_loss.csv"),
}

RECIPES: Mapping[str, Recipe] = MappingProxyType({r.name: r for r in (
    Recipe("gemma", "FIM-train a Gemma model on a source tree (LoRA with --lora-rank)",
           family="gemma", data="tree", lora_only=False, checkpoints="state",
           keeps_settings=False),
    Recipe("gemma-lora", "LoRA-fine-tune a Gemma checkpoint (--init-from) on a source tree",
           family="gemma", data="tree", lora_only=True, checkpoints="state",
           keeps_settings=False, defaults={"lora_rank": 8, "lr": 2e-4}),
    Recipe("gemma3-fim", "the embedded Gemma 3 270M's FIM LoRA on the licensed corpus",
           family="gemma3", data="licensed", lora_only=True, checkpoints="steps",
           keeps_settings=True, defaults=_GEMMA3),
    # What the editor asks: middles cut at a cursor and ending at a line end (1-8 lines),
    # SPM-heavy (the product's order for gemma3-fim), two 256-token examples to a row (middles
    # of ~15 tokens: the layers over the prompt, not the LM head, are the cost).
    Recipe("gemma3-fim-editor", "as gemma3-fim with line-aligned middles, SPM-heavy",
           family="gemma3", data="licensed", lora_only=True, checkpoints="steps",
           keeps_settings=True,
           defaults={**_GEMMA3, "spm_rate": 0.8, "line_rate": 0.8, "example_len": 256,
                     "lr": 5e-4, "warmup": 20, "steps": 1500, "eval_every": 20,
                     "out_dir": f"{GEMMA3_OUT}-editor",
                     "csv": str(FIGURES / "gemma3_fim_editor_loss.csv")}),
    # The editor recipe on one GPU: 32 rows of 512 tokens a step (16k tokens; the CPU recipe's
    # 4 rows would leave the card idle); the schedule is fitted to the time budget (how many
    # steps a card does in N minutes is not known before), checkpoints every 2.5 minutes.
    # Rank 16 on all seven projections (3.8M parameters, a 7.6 MB adapter, a 15 MB
    # optimizer-free checkpoint: under the 16 MB a job's output file may hold): at equal tokens
    # on the CPU (0.56M) its held-out loss was 0.02 nats lower than rank 8 on attention's, for
    # 4 % more time per token (docs/adapter-training-notes.md).
    Recipe("gemma3-fim-gpu", "the editor recipe sized for one GPU (rank 16, attention + MLP)",
           family="gemma3", data="licensed", lora_only=True, checkpoints="steps",
           keeps_settings=True,
           defaults={**_GEMMA3, "spm_rate": 0.8, "line_rate": 0.8, "example_len": 256,
                     "micro_batch": 32, "grad_accum": 1, "lr": 1e-3, "warmup": 30,
                     "steps": 100_000, "fit_schedule": True, "eval_every": 50,
                     "save_every": 10**9, "log_every": 10,
                     "save_minutes": 2.5, "lora_rank": 16, "targets": ATTENTION + MLP,
                     "device": "cuda", "threads": None,
                     "out_dir": f"{GEMMA3_OUT}-gpu",
                     "csv": str(FIGURES / "gemma3_fim_gpu_loss.csv")}),
)})
"""Recipe name → what differs. Names are what ``codefill train --recipe`` takes."""

GEMMA3_RUNS: Mapping[str, str] = MappingProxyType({"codegemma": "gemma3-fim",
                                                   "editor": "gemma3-fim-editor",
                                                   "gpu": "gemma3-fim-gpu"})
"""The Gemma 3 run's own short names (``--gemma3-fim --recipe editor``) → recipe names."""


def data_config(cfg: TrainConfig) -> "DataConfig":
    """How the run's examples are cut and packed."""
    from .data.dataset import DataConfig
    from .data.fim import FimRates

    return DataConfig(seq_len=cfg.seq_len, example_len=cfg.example_len,
                      rates=FimRates(cfg.fim_rate, cfg.spm_rate, cfg.line_rate, cfg.max_lines),
                      repo_context=cfg.repo_context, seed=cfg.seed, eval_share=cfg.eval_share)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name is rejected with the known ones."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown training recipe {name!r}: use one of "
                         f"{', '.join(RECIPES)}") from None


def check_config(cfg: TrainConfig, *, corpus_given: bool = False) -> Recipe:
    """The run's recipe, after checking the settings it cannot do without (``corpus_given``:
    the caller supplies the files, so no source tree is needed)."""
    recipe = get_recipe(cfg.recipe)
    if recipe.lora_only and cfg.lora_rank <= 0:
        raise ValueError(f"recipe {recipe.name} trains LoRA adapters only: lora_rank must be "
                         f"positive, got {cfg.lora_rank}")
    if recipe.family == "gemma" and recipe.lora_only and not cfg.init_from:
        raise ValueError(f"recipe {recipe.name} fine-tunes a checkpoint: pass init_from "
                         "(--init-from DIR)")
    if recipe.data == "tree" and not cfg.corpus and not corpus_given:
        raise ValueError(f"recipe {recipe.name} needs a source tree to train on")
    if not cfg.out_dir:
        raise ValueError("the run needs an output directory")
    return recipe


def settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` restricted to :class:`TrainConfig` fields, tuples restored (a checkpoint
    stores the saved config's tuples as lists when written by other tools)."""
    out = {k: v for k, v in values.items() if k in CONFIG_FIELDS}
    for k in ("betas", "targets"):
        if isinstance(out.get(k), list):
            out[k] = tuple(out[k])
    return out


def recipe_config(name: str, **given: Any) -> TrainConfig:
    """Recipe ``name``'s defaults with ``given`` on top, for a new run."""
    recipe = get_recipe(name)
    return TrainConfig(**{**recipe.defaults, **settings(given), "recipe": recipe.name})


def config_for(name: str, given: Mapping[str, Any]) -> TrainConfig:
    """The settings of a run of recipe ``name``: its defaults, then the options ``given`` (None
    values are not given). When the recipe keeps its settings and ``out_dir`` holds a
    checkpoint, the run continues with the settings saved there, the run-local ones aside."""
    recipe = get_recipe(name)
    cfg = recipe_config(name, **{k: v for k, v in given.items() if v is not None})
    if recipe.keeps_settings and cfg.out_dir:
        saved = saved_config(Path(cfg.out_dir), recipe.checkpoints)
        if saved is not None:
            return recipe_config(name, **{**settings(saved),
                                          **{k: getattr(cfg, k) for k in RUN_LOCAL}})
    return cfg
