"""The package imports and the command answers."""

from fencekit.cli import main


def test_version_prints(capsys: object) -> None:
    """``fencekit --version`` exits 0."""
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
