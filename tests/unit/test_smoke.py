"""The package imports and the command answers."""

from fencekit.cli import main


def test_version_prints(capsys: object) -> None:
    """``fencekit --version`` exits 0."""
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0


def test_benchmarks_import() -> None:
    """Every benchmark module imports (the README's bench commands)."""
    import importlib
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "bench"
    for module in sorted(bench.glob("bench_*.py")):
        importlib.import_module(f"bench.{module.stem}")
