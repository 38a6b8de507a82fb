"""``fencekit install-agents``: put the agents where Pacemaker looks.

Pacemaker runs fence agents from ``/usr/sbin`` (a path fixed when it is
built) and OCF agents from ``/usr/lib/ocf/resource.d/PROVIDER``. Each
installed file is a few lines that start this fencekit with this Python
interpreter. A file that is already there is replaced only when it was
written by fencekit (it carries a marker line): another package's agent
is never overwritten.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from fencekit.cli import _common

_PACEMAKER_FENCE_DIR = Path("/usr/sbin")
_PACEMAKER_OCF_DIR = Path("/usr/lib/ocf/resource.d")


def register(sub: Any) -> None:
    """Add ``install-agents`` to the subcommands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "install-agents",
        help="install the Pacemaker fence agents and the OCF agent",
        description=(
            "Write fencekit's fence agents to PREFIX/sbin and its OCF"
            " agent to PREFIX/lib/ocf/resource.d/fencekit. Files that"
            " fencekit did not write are never replaced."
        ),
    )
    parser.add_argument(
        "--prefix",
        type=Path,
        default=Path("/usr"),
        metavar="DIR",
        help="install under DIR (default /usr, where Pacemaker looks)",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        metavar="PATH",
        help="interpreter the agents run with (default: this one)",
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="do not check that --python runs and imports fencekit",
    )
    parser.add_argument(
        "--uninstall",
        action="store_true",
        help="remove the files fencekit installed there instead",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="only say what would change"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=handle)


@dataclasses.dataclass(frozen=True)
class Item:
    """One file to install.

    Attributes:
        path: where it goes.
        text: its content.
    """

    path: Path
    text: str


def items(prefix: Path, interpreter: str) -> list[Item]:
    """Every file fencekit installs under ``prefix``."""
    from fencekit.integrations import agents, ocf

    sbin = prefix / "sbin"
    found = [
        Item(sbin / name, agents.render_script(name, interpreter))
        for name in agents.agent_names()
    ]
    ocf_dir = prefix / "lib" / "ocf" / "resource.d" / ocf.PROVIDER
    found.append(Item(ocf_dir / ocf.AGENT, ocf.render_script(interpreter)))
    return found


def _check_interpreter(python: str) -> None:
    """The agents' interpreter must run and import fencekit.

    Raises:
        ConfigError: it cannot, so every agent would be broken.
    """
    import subprocess

    from fencekit.errors import ConfigError

    try:
        done = subprocess.run(
            [python, "-c", "import fencekit"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(
            f"cannot run {python}: {exc}", where="--python"
        ) from exc
    if done.returncode != 0:
        raise ConfigError(f"{python} cannot import fencekit", where="--python")


def handle(args: argparse.Namespace) -> int:
    """Install (or remove) every agent; exit 1 if any file was refused."""
    prefix = args.prefix.resolve()
    if not (args.uninstall or args.no_check):
        _check_interpreter(args.python)
    results = [
        _uninstall(item, args.dry_run)
        if args.uninstall
        else _install(item, args.dry_run)
        for item in items(prefix, args.python)
    ]
    bad = [r for r in results if r["result"] in ("refused", "failed")]
    text = "\n".join(f"{r['result']}: {r['path']}" for r in results)
    text += _hint(prefix, args.uninstall)
    _common.emit({"files": results}, text, args.json)
    for result in bad:
        reason = result.get("reason", "not written by fencekit, left alone")
        _common.error(f"{result['path']}: {reason}")
    return _common.EXIT_FAILED if bad else _common.EXIT_OK


def _ours(path: Path) -> bool:
    from fencekit.integrations.agents import MARKER

    try:
        head = path.read_bytes()[:4096]
    except OSError:
        return False
    return MARKER.encode() in head


def _install(item: Item, dry_run: bool) -> dict[str, str]:
    path = item.path
    if path.exists() or path.is_symlink():
        if path.is_symlink() or not _ours(path):
            return {"path": str(path), "result": "refused"}
        if path.read_text() == item.text:
            return {"path": str(path), "result": "unchanged"}
        result = "updated"
    else:
        result = "installed"
    if not dry_run:
        try:
            _write(path, item.text)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return {"path": str(path), "result": "failed", "reason": reason}
    return {"path": str(path), "result": result}


def _uninstall(item: Item, dry_run: bool) -> dict[str, str]:
    path = item.path
    if not path.exists() and not path.is_symlink():
        return {"path": str(path), "result": "absent"}
    if path.is_symlink() or not _ours(path):
        return {"path": str(path), "result": "refused"}
    if not dry_run:
        path.unlink()
        _remove_if_empty(path.parent)
    return {"path": str(path), "result": "removed"}


def _remove_if_empty(folder: Path) -> None:
    """Remove fencekit's own OCF provider folder once it is empty."""
    from fencekit.integrations.ocf import PROVIDER

    if folder.name == PROVIDER:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _write(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, so Pacemaker never runs half a
    file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temp, 0o755)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _hint(prefix: Path, uninstall: bool) -> str:
    if uninstall or prefix == Path("/usr"):
        return ""
    return (
        f"\nnote: Pacemaker looks for fence agents in {_PACEMAKER_FENCE_DIR}"
        f" and OCF agents in {_PACEMAKER_OCF_DIR}: link these files there,"
        f" e.g. ln -s {prefix}/sbin/fence_fencekit_ipmi"
        f" {_PACEMAKER_FENCE_DIR}/ and ln -s"
        f" {prefix}/lib/ocf/resource.d/fencekit {_PACEMAKER_OCF_DIR}/"
    )
