"""Kept prompt states: the KV cache of prompts the engine moved away from, so that switching back
to a file does not start cold.

The engine has one KV sequence; a request for another file overwrites most of it. Before that,
the current state (its tokens and llama.cpp's KV data of sequence 0, copied into memory with
``llama_state_seq_get_data``) is kept here. A later request whose prompt shares a longer prefix
with a kept state than with the live cache restores it (``llama_state_seq_set_data``) and
evaluates only the rest. Kept states are few (``engine.prompt_states``) and evicted least
recently used first; their bytes are reported in ``codefill/status``.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

#: A kept state must save at least this many tokens over the live cache to be restored (copying
#: a state back costs about as much as evaluating a few dozen tokens on a CPU).
MIN_GAIN_TOKENS = 64


def common_prefix_len(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two int arrays."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


@dataclass(eq=False)  # compared by identity: the arrays have no truth value
class KeptState:
    tokens: np.ndarray
    """The prompt (and generated) tokens whose KV entries ``data`` holds."""
    data: bytes


class PromptStates:
    """At most ``capacity`` kept states (0: keep none)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._states: list[KeptState] = []  # least recently used first

    def __len__(self) -> int:
        return len(self._states)

    @property
    def nbytes(self) -> int:
        return sum(len(s.data) + s.tokens.nbytes for s in self._states)

    def best(self, prompt: np.ndarray) -> tuple[KeptState | None, int]:
        """The kept state sharing the longest prefix with ``prompt``, and that length."""
        best, length = None, 0
        for s in list(self._states):
            n = common_prefix_len(s.tokens, prompt)
            if n > length:
                best, length = s, n
        return best, length

    def keep(self, llm: Any) -> None:
        """Copy the live cache (sequence 0) in; a kept state it extends or repeats is replaced."""
        import llama_cpp

        n = int(llm.n_tokens)
        if self.capacity <= 0 or n < MIN_GAIN_TOKENS:
            return
        tokens = np.array(llm.input_ids[:n], dtype=np.intc)
        self._states = [s for s in self._states
                        if common_prefix_len(s.tokens, tokens) < len(s.tokens)]
        ctx = llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
        if not written:
            return
        self._states.append(KeptState(tokens, bytes(buf)[:written]))
        del self._states[:-self.capacity]

    def restore(self, llm: Any, state: KeptState) -> bool:
        """Make ``state`` (taken out first, :meth:`take`) the live cache; False (and an empty
        cache) when llama.cpp refuses."""
        import llama_cpp

        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        llm.n_tokens = 0
        data = (ctypes.c_uint8 * len(state.data)).from_buffer_copy(state.data)
        if not llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, data, len(state.data), 0):
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            return False
        n = len(state.tokens)
        llm.input_ids[:n] = state.tokens
        llm.n_tokens = n
        return True

    def take(self, state: KeptState) -> None:
        """Take ``state`` out (it is about to become the live cache)."""
        self._states = [s for s in self._states if s is not state]

    def clear(self) -> None:
        self._states.clear()
