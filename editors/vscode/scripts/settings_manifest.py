"""package.json `contributes.configuration` for the server's settings, from lsp_server/config.py.

    python editors/vscode/scripts/settings_manifest.py          # print the generated properties
    python editors/vscode/scripts/settings_manifest.py --write  # update editors/vscode/package.json

Every server setting becomes `codefill.<section>.<name>` with the same default, description,
type and bounds as the server's config tree (docs/settings.md); tests/test_vscode.py checks that
package.json matches. The client's own settings (`codefill.server.*`, `codefill.streaming`) are
kept as they are.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PACKAGE_JSON = HERE.parent / "package.json"
sys.path.insert(0, str(HERE.parents[2]))

from lsp_server.config import Config  # noqa: E402

JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}
CLIENT_KEYS = ("codefill.server.", "codefill.streaming")


def server_properties(cls: type = Config, prefix: str = "codefill.") -> dict[str, Any]:
    props: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(typ):
            props.update(server_properties(typ, f"{name}."))
            continue
        meta = f.metadata
        prop: dict[str, Any]
        if typ is dict:
            prop = {"type": ["object", "null"], "default": f.default,
                    "additionalProperties": {"type": "boolean"}}
        elif isinstance(typ, types.UnionType):  # a number, or one of the named choices
            number = next(t for t in typing.get_args(typ) if t in (int, float))
            bounds = {k: meta[k] for k in ("min", "max") if k in meta}
            prop = {"type": [JSON_TYPES[number], "string"], "default": f.default,
                    "anyOf": [{"type": JSON_TYPES[number],
                               **{("minimum" if k == "min" else "maximum"): v
                                  for k, v in bounds.items()}},
                              {"type": "string", "enum": list(meta["choices"])}],
                    "markdownDescription": meta.get("doc", "")}
            props[name] = prop
            continue
        else:
            prop = {"type": JSON_TYPES[typ], "default": f.default}
        prop["markdownDescription"] = meta.get("doc", "")
        if "min" in meta:
            prop["minimum"] = meta["min"]
        if "max" in meta:
            prop["maximum"] = meta["max"]
        if "choices" in meta:
            prop["enum"] = list(meta["choices"])
        props[name] = prop
    return props


def updated_package(package: dict[str, Any]) -> dict[str, Any]:
    config = package.setdefault("contributes", {}).setdefault("configuration", {})
    old = config.get("properties", {})
    client = {k: v for k, v in old.items() if k.startswith(CLIENT_KEYS)}
    config["title"] = "codefill"
    config["properties"] = {**client, **server_properties()}
    return package


def main() -> None:
    if "--write" in sys.argv[1:]:
        package = json.loads(PACKAGE_JSON.read_text())
        PACKAGE_JSON.write_text(json.dumps(updated_package(package), indent=2,
                                           ensure_ascii=False) + "\n")
    else:
        print(json.dumps(server_properties(), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
