"""Import extraction and resolution per language, on small real trees written to disk."""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import pytest

from lsp_server.config import ContextConfig
from lsp_server.context import WorkspaceIndex
from lsp_server.context.graph import DependencyGraph
from lsp_server.context.imports import python as py_imports
from lsp_server.context.imports.rust import expand_use
from tests.test_context_selection import write_tree


def graph_of(root: Path) -> DependencyGraph:
    idx = WorkspaceIndex([root], ContextConfig(watch=False))
    idx.build()
    return idx.roots[0].graph


def deps(g: DependencyGraph, path: str) -> list[str]:
    return sorted(g.deps(path))


def unresolved(g: DependencyGraph, path: str) -> list[str]:
    return sorted(r.spec for r in g.unresolved(path))


# -- Python ----------------------------------------------------------------------------------------
def test_python_absolute_relative_packages_and_src_layout(tmp_path: Path) -> None:
    g = graph_of(write_tree(tmp_path, {
        "pyproject.toml": "[project]\nname='shop'\n",
        "src/shop/__init__.py": "from .core import Cart\n",
        "src/shop/core.py": "from .money import Money\nimport shop.tax as tax\n",
        "src/shop/money.py": "import decimal\n",
        "src/shop/tax/__init__.py": "",
        "src/shop/tax/rates.py": "from ..money import Money\nfrom . import eu\n",
        "src/shop/tax/eu.py": "",
        "src/shop/api/__init__.py": "",
        "src/shop/api/views.py": (
            "from shop import core, money\n"          # `from pkg import module`
            "from shop.tax import rates, DEFAULT\n"   # a module and a name defined in __init__
            "from ...outside import x\n"              # climbs out of the root: unresolved
            "def f():\n    import shop.tax.eu\n"      # nested import
            "import requests\n"),
        "tests/test_core.py": "from shop.core import Cart\n",
    }))
    assert deps(g, "src/shop/__init__.py") == ["src/shop/core.py"]
    assert deps(g, "src/shop/core.py") == ["src/shop/money.py", "src/shop/tax/__init__.py"]
    assert deps(g, "src/shop/tax/rates.py") == ["src/shop/money.py", "src/shop/tax/eu.py"]
    assert deps(g, "src/shop/api/views.py") == [
        "src/shop/core.py", "src/shop/money.py", "src/shop/tax/__init__.py",
        "src/shop/tax/eu.py", "src/shop/tax/rates.py"]
    assert unresolved(g, "src/shop/api/views.py") == ["...outside", "requests"]
    assert unresolved(g, "src/shop/money.py") == ["decimal"]  # standard library: not guessed
    assert deps(g, "tests/test_core.py") == ["src/shop/core.py"]


def test_python_namespace_package_and_script_siblings(tmp_path: Path) -> None:
    g = graph_of(write_tree(tmp_path, {
        "ns/plugins/a.py": "",
        "tools/run.py": "import helpers\nfrom ns.plugins import a\n",
        "tools/helpers.py": "",
    }))
    assert deps(g, "tools/run.py") == ["ns/plugins/a.py", "tools/helpers.py"]


def test_python_syntax_error_falls_back_to_tolerant_scan(tmp_path: Path) -> None:
    g = graph_of(write_tree(tmp_path, {
        "a.py": "from b import (x,\n  y\nimport c\ndef broken(:\n",
        "b.py": "", "c.py": "",
    }))
    assert deps(g, "a.py") == ["b.py", "c.py"]


STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.mark.parametrize("module", ["os.py", "json/decoder.py", "email/message.py",
                                    "asyncio/base_events.py", "importlib/__init__.py",
                                    "logging/handlers.py", "unittest/mock.py", "typing.py"])
def test_python_extraction_matches_ast(module: str) -> None:
    """The statement scan + per-statement ast finds exactly what a whole-file ast finds."""
    text = (STDLIB / module).read_text(encoding="utf-8")
    want = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            want |= {(a.name, ()) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            want.add(("." * node.level + (node.module or ""), tuple(a.name for a in node.names)))
    got = {(r.spec, r.names) for r in py_imports.extract(text).refs if r.kind in ("import", "from")}
    dynamic = {(m, ()) for m in py_imports._dynamic(text)}
    assert got - dynamic == want - dynamic


def test_python_stdlib_resolution(tmp_path: Path) -> None:
    g = DependencyGraph.from_texts({
        "json/__init__.py": "from .decoder import JSONDecoder\n",
        "json/decoder.py": "import re\nfrom json import scanner\n",
        "json/scanner.py": "",
        "re/__init__.py": "",
    })
    assert deps(g, "json/__init__.py") == ["json/decoder.py"]
    assert deps(g, "json/decoder.py") == ["json/scanner.py", "re/__init__.py"]


# -- JavaScript / TypeScript -----------------------------------------------------------------------
def test_js_ts_relative_extensions_index_and_tsconfig_paths(tmp_path: Path) -> None:
    g = graph_of(write_tree(tmp_path, {
        "tsconfig.base.json": '{"compilerOptions": {"baseUrl": "./src", "paths": {"@lib/*": '
                              '["lib/*"], "@cfg": ["config/index.ts"]}}}',
        "tsconfig.json": '// comments and trailing commas are allowed\n'
                         '{"extends": "./tsconfig.base.json", "compilerOptions": {"strict": true,},}',
        "src/app.tsx": (
            "import React from 'react';\n"
            "import { add, type Sum } from './math';\n"   # extension resolution
            "import * as ui from './ui';\n"               # index file
            "export { helper } from './util.js';\n"       # ESM .js naming a .ts file
            "import cfg from '@cfg';\n"                   # exact paths entry
            "const s = require('@lib/strings');\n"        # wildcard paths entry
            "const lazy = () => import('./lazy');\n"
            "import 'styles/base';\n"),                   # baseUrl
        "src/math.ts": "", "src/ui/index.tsx": "", "src/util.ts": "", "src/lazy.js": "",
        "src/config/index.ts": "", "src/lib/strings.ts": "", "src/styles/base.ts": "",
    }))
    assert deps(g, "src/app.tsx") == [
        "src/config/index.ts", "src/lazy.js", "src/lib/strings.ts", "src/math.ts",
        "src/styles/base.ts", "src/ui/index.tsx", "src/util.ts"]
    assert unresolved(g, "src/app.tsx") == ["react"]


def test_js_commented_imports_are_ignored(tmp_path: Path) -> None:
    g = graph_of(write_tree(tmp_path, {
        "a.js": "// import x from './b'\n/* require('./c') */\nimport y from './d'\n",
        "b.js": "", "c.js": "", "d.js": "",
    }))
    assert deps(g, "a.js") == ["d.js"]


# -- Go --------------------------------------------------------------------------------------------
def test_go_module_path_to_package_dirs(tmp_path: Path) -> None:
    g = graph_of(write_tree(tmp_path, {
        "go.mod": "module github.com/acme/shop\n\ngo 1.22\n",
        "cmd/shop/main.go": 'package main\n\nimport (\n\t"fmt"\n\tcart "github.com/acme/shop/'
                            'internal/cart"\n)\nimport "github.com/acme/shop/pkg/money"\n',
        "internal/cart/cart.go": "package cart\n",
        "internal/cart/items.go": "package cart\n",
        "internal/cart/cart_test.go": "package cart\n",
        "pkg/money/money.go": "package money\n",
    }))
    assert deps(g, "cmd/shop/main.go") == [
        "internal/cart/cart.go", "internal/cart/items.go", "pkg/money/money.go"]
    assert unresolved(g, "cmd/shop/main.go") == ["fmt"]


# -- Rust ------------------------------------------------------------------------------------------
def test_rust_mod_and_use_paths(tmp_path: Path) -> None:
    g = graph_of(write_tree(tmp_path, {
        "Cargo.toml": "[package]\nname = 'shop'\n",
        "src/main.rs": "mod cart;\nmod money;\nuse crate::cart::item::Item;\nuse serde::Serialize;\n",
        "src/cart.rs": "pub mod item;\nuse super::money::{Money, Currency as C};\n",
        "src/cart/item.rs": "use crate::money;\nuse self::detail::X;\nmod detail;\n",
        "src/cart/item/detail.rs": "use super::super::Cart;\n",
        "src/money/mod.rs": "pub struct Money;\n",
    }))
    assert deps(g, "src/main.rs") == ["src/cart.rs", "src/cart/item.rs", "src/money/mod.rs"]
    assert deps(g, "src/cart.rs") == ["src/cart/item.rs", "src/money/mod.rs"]
    assert deps(g, "src/cart/item.rs") == ["src/cart/item/detail.rs", "src/money/mod.rs"]
    assert deps(g, "src/cart/item/detail.rs") == ["src/cart.rs"]
    assert unresolved(g, "src/main.rs") == ["serde::Serialize"]


def test_rust_use_tree_expansion() -> None:
    assert expand_use("crate::a::{b, c::{d, e as f}, self}") == [
        "crate::a::b", "crate::a::c::d", "crate::a::c::e", "crate::a"]


# -- Java / Kotlin ---------------------------------------------------------------------------------
def test_java_kotlin_package_imports_and_same_package(tmp_path: Path) -> None:
    g = graph_of(write_tree(tmp_path, {
        "app/src/main/java/com/acme/shop/Cart.java": (
            "package com.acme.shop;\n\nimport com.acme.money.Money;\n"
            "import static com.acme.money.Rates.DEFAULT;\nimport java.util.List;\n"
            "public class Cart { Item first; List<Money> m; }\n"),
        "app/src/main/java/com/acme/shop/Item.java": "package com.acme.shop;\nclass Item {}\n",
        "app/src/main/java/com/acme/shop/Unused.java": "package com.acme.shop;\nclass Unused {}\n",
        "lib/src/main/java/com/acme/money/Money.java": "package com.acme.money;\n",
        "lib/src/main/java/com/acme/money/Rates.java": "package com.acme.money;\n",
        "app/src/main/kotlin/com/acme/ui/Screen.kt": (
            "package com.acme.ui\n\nimport com.acme.shop.*\nimport com.acme.money.Money as M\n"),
    }))
    base = "app/src/main/java/com/acme/shop/"
    assert deps(g, base + "Cart.java") == [
        base + "Item.java", "lib/src/main/java/com/acme/money/Money.java",
        "lib/src/main/java/com/acme/money/Rates.java"]
    assert unresolved(g, base + "Cart.java") == ["java.util.List"]
    assert deps(g, "app/src/main/kotlin/com/acme/ui/Screen.kt") == [
        base + "Cart.java", base + "Item.java", base + "Unused.java",
        "lib/src/main/java/com/acme/money/Money.java"]


# -- C / C++ ---------------------------------------------------------------------------------------
def test_c_includes_relative_and_include_dirs(tmp_path: Path) -> None:
    g = graph_of(write_tree(tmp_path, {
        "src/engine.cpp": ('#include "engine.h"\n#include "util/strings.h"\n'
                           '#include <acme/api.h>\n#include <vector>\n'),
        "src/engine.h": '#pragma once\n#include "../include/acme/api.h"\n',
        "src/util/strings.h": "",
        "include/acme/api.h": "",
        "third/other/acme/api.h": "",  # same tail, farther away: the nearer one wins
    }))
    assert deps(g, "src/engine.cpp") == ["include/acme/api.h", "src/engine.h",
                                         "src/util/strings.h"]
    assert deps(g, "src/engine.h") == ["include/acme/api.h"]
    assert unresolved(g, "src/engine.cpp") == ["vector"]


# -- incremental updates ---------------------------------------------------------------------------
def test_incremental_resolution_follows_file_set_changes() -> None:
    files = {"app.py": "import util\nfrom models import User\n", "models.py": ""}
    g = DependencyGraph.from_texts(files)
    assert deps(g, "app.py") == ["models.py"]
    gen = g.generation
    g.update("util.py", "")  # the missing module appears
    assert deps(g, "app.py") == ["models.py", "util.py"]
    assert g.importers("util.py") == ["app.py"]
    assert g.generation > gen
    gen = g.generation
    g.update("models.py", "X = 1\n")  # content change, same imports: no edge change
    assert g.generation == gen
    g.remove("models.py")
    assert deps(g, "app.py") == ["util.py"]
    assert [r.spec for r in g.unresolved("app.py")] == ["models"]
    g.update("app.py", "import util\n")
    assert g.importers("models.py") == []


def test_incremental_config_and_symbol_changes() -> None:
    texts = {"tsconfig.json": '{"compilerOptions": {"paths": {"@/*": ["src/*"]}}}',
             "src/a.ts": "import b from '@/b';\n", "src/b.ts": "", "lib/b.ts": "",
             "j/A.java": "package p;\nimport q.B;\n", "j/B.java": "package r;\n"}
    g = DependencyGraph.from_texts(texts)
    assert deps(g, "src/a.ts") == ["src/b.ts"]
    assert deps(g, "j/A.java") == []
    texts["tsconfig.json"] = '{"compilerOptions": {"paths": {"@/*": ["lib/*"]}}}'
    g.update("tsconfig.json", texts["tsconfig.json"])
    assert deps(g, "src/a.ts") == ["lib/b.ts"]
    g.update("j/B.java", "package q;\n")  # the class moves into the imported package
    assert deps(g, "j/A.java") == ["j/B.java"]


def test_cycles_do_not_break_the_graph() -> None:
    g = DependencyGraph.from_texts({"a.py": "import b\n", "b.py": "import c\n",
                                    "c.py": "import a\n"})
    assert deps(g, "a.py") == ["b.py"] and deps(g, "c.py") == ["a.py"]
