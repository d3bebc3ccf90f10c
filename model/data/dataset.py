"""Training examples from a corpus, packed into fixed-length rows; a deterministic stream.

One example per target file: a FIM split of the file (or of a line-aligned window of it when the
file alone would not fit), preceded by the context the daemon would select for that file
(dependency-graph packing and test pairing, :mod:`model.data.repo_select`) in the room left up to
the sequence length. Examples are packed greedily into rows of ``seq_len`` tokens; each keeps its
own positions (from 0) and segment id, so packed examples do not attend to each other.

Everything is a pure function of (seed, epoch, path): the stream can be regenerated to any row,
which is how a resumed run continues on exactly the rows it would have seen.
"""

from __future__ import annotations

import queue
import random
import threading
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, TypeVar

import torch

from lsp_server.config import ContextConfig
from lsp_server.context.graph import DependencyGraph
from lsp_server.context.outline import OutlineItem
from lsp_server.context.packing import TokenCounter

from ..gemma import IGNORE_INDEX
from .corpus import Corpus
from .fim import Example, FimRates, FimSplit, Layout, fim_split
from .repo_select import select_for_target

T = TypeVar("T")
BuildMap = Callable[[Iterable[tuple[int, str]]], Iterable[Example]]


@dataclass(frozen=True)
class DataConfig:
    seq_len: int = 512
    example_len: int | None = None
    """Longest example (tokens; None: ``seq_len``). Shorter examples pack several to a row: more
    examples per CPU-second when the loss covers only short middles."""
    rates: FimRates = FimRates()
    repo_context: bool = True
    """Prepend the daemon's context selection (dependency graph + test pair) to each target."""
    seed: int = 0
    eval_share: float = 0.02
    """Share of files held out (chosen by a hash of the path: stable as the corpus grows)."""
    context: ContextConfig = field(default_factory=ContextConfig)


@dataclass
class Row:
    """One packed training row; tensors of shape (seq_len,)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    """Next-token targets, IGNORE_INDEX on padding."""
    position_ids: torch.Tensor
    segment_ids: torch.Tensor


def is_eval_path(path: str, share: float) -> bool:
    return zlib.crc32(path.encode()) % 10_000 < share * 10_000


def _window(text: str, count: TokenCounter, budget: int, rng: random.Random) -> str:
    """A random run of whole lines of ``text`` within ``budget`` tokens (the whole text if it
    fits). The daemon also cuts prefix and suffix at line boundaries."""
    if count(text) <= budget:
        return text
    lines = text.splitlines(keepends=True)
    chars_per_token = max(1.0, len(text) / max(1, count(text)))
    target_chars = int(budget * chars_per_token * 0.9)
    start = rng.randrange(len(lines))
    out: list[str] = []
    size = 0
    for line in lines[start:]:
        if size + len(line) > target_chars and out:
            break
        out.append(line)
        size += len(line)
    window = "".join(out)
    while out and count(window) > budget:  # the estimate was off: drop lines from the end
        out.pop()
        window = "".join(out)
    if not window:  # one enormous line: cut characters
        window = lines[start][:target_chars]
        while window and count(window) > budget:
            window = window[: len(window) * 3 // 4]
    return window


class ExampleBuilder:
    """Turns (path, rng) into the token list of one example of at most ``seq_len + 1`` tokens."""

    def __init__(self, texts: dict[str, str], layout: Layout, cfg: DataConfig) -> None:
        self.texts = texts
        self.layout = layout
        self.cfg = cfg
        self.count = TokenCounter(layout.tok, capacity=1 << 14)
        self.graph = DependencyGraph.from_texts(texts) if cfg.repo_context else None
        self.outlines: dict[str, list[OutlineItem]] = {}

    @property
    def limit(self) -> int:
        """Tokens of one example: its inputs plus the last target."""
        return min(self.cfg.example_len or self.cfg.seq_len, self.cfg.seq_len) + 1

    def split(self, path: str, rng: random.Random) -> FimSplit:
        room = self.limit - self.layout.overhead(path)
        return fim_split(_window(self.texts[path], self.count, room, rng), rng, self.cfg.rates)

    def build(self, path: str, rng: random.Random) -> Example:
        limit = self.limit
        split = self.split(path, rng)
        bare = self.layout.example(split, path)
        if self.graph is None or len(bare) >= limit:
            return bare.cut(limit)
        files = select_for_target(self.graph, self.texts, path, self.count, limit - len(bare),
                                  self.cfg.context, self.outlines).files
        toks = self.layout.example(split, path, files)
        while len(toks) > limit and files:  # packing's margins are estimates: drop the farthest
            files = files[1:]
            toks = self.layout.example(split, path, files)
        return toks


def pack_rows(examples: Iterable[list[int]], seq_len: int, pad_id: int) -> Iterator[Row]:
    """Greedy packing: examples in order, a new row when the next one does not fit."""
    for row, _ in pack_indexed(enumerate(examples), seq_len, pad_id):
        yield row


def pack_indexed(examples: Iterable[tuple[int, list[int]]], seq_len: int, pad_id: int
                 ) -> Iterator[tuple[Row, int]]:
    """Greedy packing of (index, example) pairs; yields each row with the index of the first
    example *not* in it (where a resumed stream starts again). An :class:`Example` with
    ``n_target`` set has labels only on its last ``n_target`` tokens (the middle and its end)."""
    ids: list[int] = []
    labels: list[int] = []
    pos: list[int] = []
    seg: list[int] = []

    def flush() -> Row:
        n = seq_len - len(ids)
        # Padding: its own segment (-1) attends only to itself; no loss on it.
        return Row(torch.tensor(ids + [pad_id] * n), torch.tensor(labels + [IGNORE_INDEX] * n),
                   torch.tensor(pos + [0] * n), torch.tensor(seg + [-1] * n))

    k = 0
    last = -1
    for i, ex in examples:
        last = i
        if len(ex) < 2:
            continue
        n_target = getattr(ex, "n_target", None)
        if isinstance(ex, Example):
            ex = ex.cut(seq_len + 1)
            n_target = ex.n_target
        else:
            ex = ex[: seq_len + 1]
        if len(ids) + len(ex) - 1 > seq_len:
            yield flush(), i
            ids, labels, pos, seg = [], [], [], []
        ids += ex[:-1]
        if n_target is None:
            labels += ex[1:]
        else:  # label j is token j+1: a target when j+1 is among the last n_target tokens
            first = len(ex) - n_target
            labels += [t if j + 1 >= first else IGNORE_INDEX for j, t in enumerate(ex[1:])]
        pos += range(len(ex) - 1)
        seg += [k] * (len(ex) - 1)
        k += 1
    if ids:
        yield flush(), last + 1


def eval_rows_of(corpus: Corpus, layout: Layout, dcfg: DataConfig, n: int) -> list[Row]:
    """The first ``n`` rows of the held-out files (none in a corpus too small to hold any)."""
    try:
        ev = RowStream(corpus, layout, dcfg, split="eval").epoch_rows(0)
    except ValueError:  # no held-out file in a tiny corpus
        return []
    return [r for _, r in zip(range(n), ev)]


class RowStream:
    """The training rows of a corpus, epoch after epoch, reproducible from (seed, epoch)."""

    def __init__(self, corpus: Corpus, layout: Layout, cfg: DataConfig, *,
                 split: str = "train") -> None:
        self.cfg = cfg
        self.layout = layout
        held = {p for p in corpus.files if is_eval_path(p, cfg.eval_share)}
        if split == "train":
            self.targets = sorted(p for p in corpus.files if p not in held)
            texts = {p: t for p, t in corpus.files.items() if p not in held}
        else:  # held-out targets may draw context from the training files, as in a real repo
            self.targets = sorted(held)
            texts = dict(corpus.files)
        if not self.targets:
            raise ValueError(f"no {split} files in the corpus")
        self.builder = ExampleBuilder(texts, layout, cfg)
        self.pad_id = getattr(layout.tok, "pad_id", 0)

    def epoch_rows(self, epoch: int) -> Iterator[Row]:
        order = list(self.targets)
        random.Random(f"{self.cfg.seed}:order:{epoch}").shuffle(order)
        examples = (self.builder.build(p, random.Random(f"{self.cfg.seed}:{epoch}:{p}"))
                    for p in order)
        return pack_rows(examples, self.cfg.seq_len, self.pad_id)

    def epoch_order(self, epoch: int) -> list[str]:
        order = list(self.targets)
        random.Random(f"{self.cfg.seed}:order:{epoch}").shuffle(order)
        return order

    def build_at(self, epoch: int, path: str) -> Example:
        """The example of ``path`` in ``epoch``: a pure function of (seed, epoch, path)."""
        return self.builder.build(path, random.Random(f"{self.cfg.seed}:{epoch}:{path}"))

    def positioned_rows(self, epoch: int = 0, index: int = 0, *,
                        build_map: BuildMap | None = None
                        ) -> Iterator[tuple[Row, tuple[int, int]]]:
        """Rows from example ``index`` of ``epoch`` on, each with the (epoch, index) at which
        the stream continues after it: a data position a checkpoint can store, so a resumed
        run starts there directly instead of regenerating every row before it.

        ``build_map`` maps (epoch, path) pairs to their examples in order (default: one after
        the other here; :mod:`model.data.packed` builds them in worker processes)."""
        build = build_map or (lambda items: (self.build_at(e, p) for e, p in items))
        while True:
            order = self.epoch_order(epoch)
            built = build((epoch, order[i]) for i in range(index, len(order)))
            examples = zip(range(index, len(order)), built)
            produced = 0
            for row, nxt in pack_indexed(examples, self.cfg.seq_len, self.pad_id):
                produced += 1
                yield row, ((epoch + 1, 0) if nxt >= len(order) else (epoch, nxt))
            if produced == 0 and index == 0:
                return
            epoch, index = epoch + 1, 0

    def rows(self, start: int = 0) -> Iterator[Row]:
        """All rows from global row index ``start`` on (regenerating the skipped ones)."""
        i, epoch = 0, 0
        while True:
            produced = 0
            for row in self.epoch_rows(epoch):
                produced += 1
                if i >= start:
                    yield row
                i += 1
            if produced == 0:
                return
            epoch += 1


def prefetch(rows: Iterator[T], depth: int = 64) -> Iterator[T]:
    """``rows`` produced by a background thread (tokenizing and outlining, mostly in C, overlap
    the training step); same order, so the stream stays deterministic. An exception in the
    producer is raised in the consumer."""
    q: queue.Queue[T | BaseException | None] = queue.Queue(maxsize=depth)

    def work() -> None:
        try:
            for r in rows:
                q.put(r)
            q.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    threading.Thread(target=work, name="codefill-train-data", daemon=True).start()
    while True:
        item = q.get()
        if item is None:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def collate(rows: list[Row]) -> dict[str, torch.Tensor]:
    """(B, seq_len) tensors for the model and the loss."""
    return {"input_ids": torch.stack([r.input_ids for r in rows]),
            "labels": torch.stack([r.labels for r in rows]),
            "position_ids": torch.stack([r.position_ids for r in rows]),
            "segment_ids": torch.stack([r.segment_ids for r in rows])}
