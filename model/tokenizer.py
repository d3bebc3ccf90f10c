"""SentencePiece tokenizers: train one on a code corpus, or use a checkpoint's own.

Trained like Gemma's: BPE with byte fallback, no dummy prefix, identity normalisation (code keeps
every space), digits split, and Gemma's special ids (pad 0, eos 1, bos 2, unk 3). The CodeGemma
FIM sentinels and file separator are reserved as user-defined symbols, taken from the daemon's
template registry so that the prompt code and the vocabulary cannot drift apart; the chat turn
markers are reserved as Gemma's vocabulary has them. Pieces may span newlines
(``split_by_whitespace`` off), so ``):\\n`` or a newline plus indentation is one token.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Iterable, Iterator

from lsp_server.prompt.tokens import LlamaTokenizer
from lsp_server.prompt.templates import TEMPLATES

CODEGEMMA = TEMPLATES["codegemma"]
FIM_ROLES = ("pre", "mid", "suf", "sep")
TURN_MARKERS = ("<start_of_turn>", "<end_of_turn>")


def reserved_symbols() -> list[str]:
    """User-defined symbols, in the order Gemma's vocabulary lists them (prefix, middle, suffix,
    file separator), from the daemon's CodeGemma template."""
    return [CODEGEMMA.sentinels[r][0] for r in FIM_ROLES] + list(TURN_MARKERS)


def write_tokenizer_config(directory: Path, pieces: list[str]) -> None:
    """tokenizer_config.json as Gemma's: the special tokens and the reserved symbols in
    ``added_tokens_decoder`` (``<pad>``, ``<eos>``, ``<bos>``, ``<unk>`` and the turn markers
    flagged special, the FIM sentinels not). ``pieces``: the vocabulary, by id."""
    reserved = reserved_symbols()
    decoder = {}
    for text in ["<pad>", "<eos>", "<bos>", "<unk>", *reserved]:
        if text in pieces:
            decoder[str(pieces.index(text))] = {
                "content": text, "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False,
                "special": text.startswith("<") and text not in reserved or
                text in TURN_MARKERS}
    cfg = {"add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": decoder,
           "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
           "unk_token": "<unk>", "clean_up_tokenization_spaces": False,
           "model_max_length": 1000000000000000019884624838656, "sp_model_kwargs": {},
           "spaces_between_special_tokens": False, "tokenizer_class": "GemmaTokenizer",
           "use_default_system_prompt": False}
    (directory / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))


class SentencePieceTokenizer:
    """The daemon's ``Tokenizer`` protocol over a SentencePiece model (plus what training needs)."""

    def __init__(self, model_file: Path | None = None, *, proto: bytes | None = None) -> None:
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor()
        if proto is not None:
            self.sp.load_from_serialized_proto(proto)
        elif model_file is not None:
            self.sp.load(str(model_file))
        else:
            raise ValueError("a model file or a serialized proto is needed")
        self.bos_id: int | None = self.sp.bos_id() if self.sp.bos_id() >= 0 else None
        self.eos_id: int = self.sp.eos_id()
        self.pad_id: int = self.sp.pad_id() if self.sp.pad_id() >= 0 else 0
        self.add_bos = self.bos_id is not None
        self.vocab_size: int = self.sp.get_piece_size()

    @classmethod
    def from_checkpoint(cls, directory: Path) -> "SentencePieceTokenizer":
        f = directory / "tokenizer.model"
        if not f.is_file():
            raise FileNotFoundError(f"{directory} has no tokenizer.model (SentencePiece)")
        return cls(f)

    def tokenize(self, text: str) -> list[int]:
        return list(self.sp.encode(text)) if text else []

    def token_id(self, piece: str) -> int | None:
        tid = self.sp.piece_to_id(piece)
        return tid if self.sp.id_to_piece(tid) == piece else None

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)

    def piece(self, tid: int) -> str:
        return self.sp.id_to_piece(tid)


def _chunks(texts: Iterable[str], chunk_chars: int) -> Iterator[str]:
    # SentencePiece trains on "sentences" of bounded length; chunks of whole lines keep
    # newline + indentation pairs together.
    for text in texts:
        buf: list[str] = []
        size = 0
        for line in text.splitlines(keepends=True):
            if size + len(line) > chunk_chars and buf:
                yield "".join(buf)
                buf, size = [], 0
            buf.append(line[:chunk_chars])
            size += len(buf[-1])
        if buf:
            yield "".join(buf)


def train_tokenizer(texts: Iterable[str], out_dir: Path, vocab_size: int = 4096, *,
                    max_chunks: int = 20000, seed: int = 0, threads: int = 2,
                    character_coverage: float = 0.9995) -> Path:
    """Train on ``texts``; writes ``tokenizer.model`` and ``tokenizer_config.json`` to out_dir.

    Characters outside ``character_coverage`` of the corpus get no piece of their own; byte
    fallback still encodes them (as UTF-8 bytes), so nothing is ever <unk>.
    """
    import sentencepiece as spm

    chunks = list(_chunks(texts, 2000))
    if not chunks:
        raise ValueError("no text to train a tokenizer on")
    rng = random.Random(seed)
    if len(chunks) > max_chunks:  # a seeded sample bounds the training time
        chunks = rng.sample(chunks, max_chunks)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(chunks), model_writer=proto, model_type="bpe",
        vocab_size=vocab_size, byte_fallback=True, character_coverage=character_coverage,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", unk_piece="<unk>", user_defined_symbols=reserved_symbols(),
        add_dummy_prefix=False, remove_extra_whitespaces=False, split_digits=True,
        normalization_rule_name="identity", allow_whitespace_only_pieces=True,
        split_by_whitespace=False, max_sentence_length=8192, num_threads=threads,
        minloglevel=2)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tokenizer.model"
    path.write_bytes(proto.getvalue())
    tok = SentencePieceTokenizer(path)
    write_tokenizer_config(out_dir, [tok.piece(i) for i in range(tok.vocab_size)])
    return path


class GGUFTokenizer(LlamaTokenizer):
    """The daemon's tokenizer (:class:`~lsp_server.prompt.tokens.LlamaTokenizer`) over a
    GGUF's own vocabulary, without the weights.

    For models that ship only as GGUF (the embedded Gemma 3 270M: no ``tokenizer.model``).
    llama.cpp loads the vocabulary alone (``vocab_only``: no weights, ~1 s); tokenizing is the
    daemon's own code with the special ids and BOS rule of the same ``ModelInfo``, so a training
    example and a prompt for the same text are the same tokens.
    """

    def __init__(self, path: str | Path) -> None:
        from lsp_server.engine.llama_loader import _llama_factory, cpu_has_amx
        from lsp_server.models.gguf_info import read_model_info

        self.path = str(path)
        self.info = read_model_info(self.path)
        super().__init__(_llama_factory(model_path=self.path, n_ctx=64, vocab_only=True,
                                        verbose=False, use_extra_bufts=not cpu_has_amx()),
                         self.info)
        ids = self.info.special_ids
        self.eos_id: int | None = ids.get("eos")
        self.pad_id: int = ids.get("pad", 0)
        self.vocab_size: int = len(self.info.token_types) if self.info.token_types else \
            int(self._llama.n_vocab())

    def decode(self, ids: list[int]) -> str:
        return self._llama.detokenize(ids).decode("utf-8", errors="replace")

    def close(self) -> None:
        self._llama.close()
