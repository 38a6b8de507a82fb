"""Per-node locks that serialise fences across processes.

Each node has a lock file under the fencer's run directory, held with
``flock(LOCK_EX)`` for the whole fence. The kernel releases it when the
holder exits, even by SIGKILL, so a crashed fencer never leaves a node
locked. The lock is polled without blocking, so waiting for it is
bounded by the fence's deadline and can be cancelled.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
from pathlib import Path
from typing import Final

from fencekit.clock import SYSTEM_CLOCK, Clock
from fencekit.errors import ConfigError, DeviceTimeoutError

__all__ = ["NodeLock"]

_POLL: Final = 0.02
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")


class NodeLock:
    """The cross-process lock of one node.

    Args:
        run_dir: the directory holding lock files; created if missing.
        node: the node's name.
        clock: the clock used while waiting.
    """

    def __init__(
        self, run_dir: Path, node: str, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        safe = _UNSAFE.sub("_", node)
        self.path = run_dir / f"node-{safe}.lock"
        self.node = node
        self._clock = clock
        self._fd: int | None = None

    async def acquire(self, timeout: float) -> float:
        """Take the lock, waiting at most ``timeout`` seconds.

        Returns:
            The seconds spent waiting for another holder.

        Raises:
            DeviceTimeoutError: another process held it until the end.
            ConfigError: the run directory or lock file cannot be used.
        """
        fd = self._open()
        start = self._clock.monotonic()
        try:
            while not _try_lock(fd):
                waited = self._clock.monotonic() - start
                if waited >= timeout:
                    raise DeviceTimeoutError(
                        f"another process held the lock of node {self.node}"
                        f" for {waited:.1f} s",
                        node=self.node,
                    )
                await self._clock.sleep(min(_POLL, timeout - waited))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self._clock.monotonic() - start

    def release(self) -> None:
        """Give the lock back; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot open lock file: {exc.strerror}", where=str(self.path)
            ) from exc


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True
