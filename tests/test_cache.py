"""The suggestion cache: exact hits and typing-through."""

from __future__ import annotations

from lsp_server.completion.cache import SuggestionCache, make_entry


def _done(uri: str, prefix: str, suffix: str, text: str):
    e = make_entry(uri, prefix, suffix)
    e.text, e.done = text, True
    return e


def test_exact_hit_and_typing_through() -> None:
    cache = SuggestionCache()
    cache.add(_done("a", "x = ", "\n", "compute(1)"))
    assert cache.lookup("a", "x = ", "\n")[1] == ""
    entry, typed = cache.lookup("a", "x = com", "\n")
    assert typed == "com" and entry.text[len(typed):] == "pute(1)"


def test_mismatching_typing_misses() -> None:
    cache = SuggestionCache()
    cache.add(_done("a", "x = ", "\n", "compute(1)"))
    assert cache.lookup("a", "x = cat", "\n") is None
    assert cache.lookup("b", "x = ", "\n") is None           # another document
    assert cache.lookup("a", "y = ", "\n") is None           # the prefix changed
    assert cache.lookup("a", "x = ", "\nz = 1\n") is None    # the suffix changed
    assert cache.lookup("a", "x =", "\n") is None            # deleted a character


def test_in_flight_entry_consistent_while_shorter() -> None:
    cache = SuggestionCache()
    e = make_entry("a", "def f(", ")")
    e.text = "ab"
    cache.add(e)
    entry, typed = cache.lookup("a", "def f(abc", ")")  # typed ahead of the model: maybe
    assert entry is e and typed == "abc" and e.remainder(typed) == ""
    e.done = True  # once finished, "ab" cannot become "abc"
    assert cache.lookup("a", "def f(abc", ")") is None


def test_newest_entry_wins_and_capacity_is_bounded() -> None:
    cache = SuggestionCache(capacity=3)
    for i in range(5):
        cache.add(_done("a", "p", "s", f"v{i}"))
    assert len(cache) == 3
    assert cache.lookup("a", "p", "s")[0].text == "v4"
    cache.clear("a")
    assert len(cache) == 0


def test_long_prefixes_compare_only_their_tail() -> None:
    cache = SuggestionCache()
    prefix = "# header\n" + "x = 1\n" * 5000
    cache.add(_done("a", prefix, "", "y = 2"))
    assert cache.lookup("a", prefix + "y", "")[1] == "y"


def test_fully_typed_through_entry_is_no_hit() -> None:
    cache = SuggestionCache()
    cache.add(_done("a", "x = ", "\n", "f(1)"))
    assert cache.lookup("a", "x = f(1)", "\n") is None
