"""The interface every power driver implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from fencekit.outcome import Action, PowerState

__all__ = ["PowerDriver"]


@runtime_checkable
class PowerDriver(Protocol):
    """One fence device that can read and switch a node's power.

    A driver only talks to its device: it reads the state and sends a
    command. Deciding what to send, and verifying the result, is done by
    :func:`fencekit.power.operate` for every driver alike.

    Attributes:
        method: the fencing method's name (``ipmi``, ``redfish``...).
        device: the device's address, for outcomes and messages.
    """

    method: str
    device: str

    async def read_state(self, timeout: float) -> PowerState:
        """Read the power state once.

        Raises:
            TransportError: the device could not be read; a
                :class:`~fencekit.errors.ProtocolError` marked transient
                may succeed if repeated.
        """
        ...

    async def send(self, action: Action, timeout: float) -> None:
        """Send one power command (``ON``, ``OFF`` or ``DIAG``).

        Raises:
            TransportError: the command was not accepted, or no answer.
            UnsupportedError: the device cannot do ``action``.
        """
        ...

    async def close(self) -> None:
        """Release the device's session; safe to call twice."""
        ...
