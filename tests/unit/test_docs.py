"""The documentation is tested against the code it describes.

Every fenced block in README.md and docs/*.md carries a marker comment on
the line before it:

- ``<!-- inventory -->`` or ``<!-- agent -->`` on a TOML block: the block
  loads with the inventory or agent configuration loader;
- ``<!-- tested: tests/FILE.py::NAME ... -->`` on a shell block: the
  commands are run by those tests;
- ``<!-- hardware: REASON -->`` on a shell block: the commands need real
  hardware or a production host a test cannot have;
- ``<!-- text -->`` on any other block (output, Python shown whole in a
  test, a file layout).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(
    r"(?:<!--\s*(?P<marker>[^>]*?)\s*-->\s*\n)?```(?P<lang>\w*)\n(?P<body>.*?)```",
    re.S,
)


def blocks() -> list[tuple[str, str, str, str]]:
    found = []
    for doc in DOCS:
        for match in _BLOCK.finditer(doc.read_text()):
            line = doc.read_text()[: match.start()].count("\n") + 1
            found.append(
                (
                    f"{doc.name}:{line}",
                    match["marker"] or "",
                    match["lang"],
                    match["body"],
                )
            )
    return found


BLOCKS = blocks()


@pytest.mark.parametrize(
    ("where", "marker", "lang", "body"), BLOCKS, ids=[b[0] for b in BLOCKS]
)
def test_every_block_is_marked(
    where: str, marker: str, lang: str, body: str
) -> None:
    """No example in the docs goes untested without saying why."""
    kind = marker.split(":", 1)[0].strip()

    assert kind in {"inventory", "agent", "tested", "hardware", "text"}, (
        f"{where}: a {lang or 'plain'} block needs a marker comment"
    )
    if lang == "toml":
        assert kind in {"inventory", "agent", "text"}, where


def _with_files(data: Any, tmp: Path) -> Any:
    """Point every ``*_file`` key at a readable file under ``tmp``."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if key.endswith("_file") and isinstance(value, str):
                path = tmp / value.lstrip("/")
                path.parent.mkdir(parents=True, exist_ok=True)
                if not path.exists():
                    path.write_text("example-secret\n")
                    path.chmod(0o600)
                out[key] = str(path)
            else:
                out[key] = _with_files(value, tmp)
        return out
    if isinstance(data, list):
        return [_with_files(v, tmp) for v in data]
    return data


TOML = [b for b in BLOCKS if b[2] == "toml" and b[1] in {"inventory", "agent"}]


@pytest.mark.parametrize(
    ("where", "marker", "lang", "body"), TOML, ids=[b[0] for b in TOML]
)
def test_toml_examples_load(
    where: str, marker: str, lang: str, body: str, tmp_path: Path
) -> None:
    """Each configuration example loads with the real loader."""
    data = _with_files(tomllib.loads(body), tmp_path)

    if marker == "inventory":
        from fencekit.config import parse

        parse(data, source=tmp_path / "inventory.toml")
    else:
        from fencekit.monitor import parse_config

        parse_config(data, tmp_path / "agent.toml")


SHELL = [b for b in BLOCKS if b[1].startswith("tested:")]


@pytest.mark.parametrize(
    ("where", "marker", "lang", "body"), SHELL, ids=[b[0] for b in SHELL]
)
def test_tested_commands_name_real_tests(
    where: str, marker: str, lang: str, body: str
) -> None:
    """The tests a shell block points to exist."""
    for ref in marker.split(":", 1)[1].split():
        file, _, name = ref.partition("::")
        path = ROOT / file
        assert path.exists(), f"{where}: {file} does not exist"
        assert re.search(rf"def {re.escape(name)}\b", path.read_text()), (
            f"{where}: no test {name} in {file}"
        )
