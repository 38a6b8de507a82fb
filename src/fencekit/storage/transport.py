"""The one interface every SCSI transport implements, and opening one.

A transport carries one CDB to one path of a logical unit and brings back
status, data and sense (:class:`~fencekit.storage.spc.CommandResult`).
It raises only for the transport itself (no answer, connection lost);
SCSI status and sense are judged by :func:`fencekit.storage.spc.check`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from fencekit.errors import ConfigError
from fencekit.storage.spc import CommandResult

__all__ = ["ScsiTransport", "open_transport"]


@runtime_checkable
class ScsiTransport(Protocol):
    """One path to a logical unit.

    Attributes:
        device: the path's name, for outcomes and messages.
    """

    device: str

    async def execute(
        self,
        cdb: bytes,
        *,
        data_out: bytes = b"",
        data_in: int = 0,
        timeout: float,
    ) -> CommandResult:
        """Send one command and return what came back.

        Args:
            cdb: the command descriptor block.
            data_out: bytes sent to the target (then ``data_in`` is 0).
            data_in: the most bytes to accept from the target.
            timeout: seconds to wait for the answer.

        Raises:
            UnreachableError: the path cannot be opened or reached.
            DeviceTimeoutError: no answer within ``timeout``.
            ProtocolError: the transport failed in another way.
        """
        ...

    async def close(self) -> None:
        """Release the path; safe to call twice."""
        ...


def open_transport(
    device: str, *, initiator: str | None = None
) -> ScsiTransport:
    """The transport for ``device``: an ``iscsi://`` URL or a local path.

    Nothing is opened until the first command.

    Raises:
        ConfigError: the URL is malformed, or an initiator name is
            missing for iSCSI.
    """
    if device.startswith("iscsi://"):
        from fencekit.storage.iscsi import IscsiTransport

        if not initiator:
            raise ConfigError(
                "an iSCSI initiator name is needed (--initiator IQN)",
                where=device,
            )
        return IscsiTransport(device, initiator=initiator)
    if "://" in device:
        raise ConfigError(
            "unknown device scheme (iscsi://HOST:PORT/IQN/LUN or a path)",
            where=device,
        )
    from fencekit.storage.sgio import SgioTransport

    return SgioTransport(device)
