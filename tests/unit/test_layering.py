"""Dependencies point inward: schemas <- resolvers <- streams, and pure code imports no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_LIBRARIES = frozenset({"faust", "confluent_kafka", "redis", "aiokafka"})
# what each pure package must not import: I/O libraries and the layers outside it
FORBIDDEN = {
    "schemas": IO_LIBRARIES | {"streams", "resolvers"},
    "resolvers": IO_LIBRARIES | {"streams"},
}


def imported_roots(source: str) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (  # importlib.import_module("redis") / __import__("redis")
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_pure_packages_import_no_io_library_nor_outer_layer(package: str) -> None:
    files = modules(package)
    assert files, f"{package}/ has no modules"
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path.read_text()) & FORBIDDEN[package])
        for path in files
    }
    assert {p: bad for p, bad in offenders.items() if bad} == {}


def test_the_scanner_sees_every_import_form() -> None:
    source = (
        "import redis\n"
        "import confluent_kafka.admin as a\n"
        "from faust import App\n"
        "from aiokafka.structs import TopicPartition\n"
        "import importlib\n"
        "importlib.import_module('streams.settings')\n"
        "from . import sibling\n"
        "def f():\n    import os\n"
    )
    assert imported_roots(source) == {
        "redis",
        "confluent_kafka",
        "faust",
        "aiokafka",
        "importlib",
        "streams",
        "os",
    }
