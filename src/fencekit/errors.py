"""The one error tree of fencekit.

Every error fencekit raises derives from :class:`FencekitError`. Transport
failures (the device could not be talked to) are kept apart from fencing
outcomes (the device was talked to, but the result was not confirmed)::

    FencekitError
    ├── ConfigError              bad inventory, option or argument
    ├── SecretError              a credential source could not be read
    ├── TransportError           talking to a fence device failed
    │   ├── AuthenticationError  the device refused the credentials
    │   ├── UnreachableError     nothing answered at the address
    │   ├── DeviceTimeoutError   the device stopped answering in time
    │   └── ProtocolError        the reply made no sense, or an error code
    ├── UnsupportedError         the device cannot do what was asked
    └── FenceError               a fencing outcome that is not a success
        ├── NotConfirmedError    command sent, state not confirmed
        └── FenceFailedError     every fence level failed

Node, device, action and attempt are attributes, not only words in the
message. Drivers translate their library's exceptions in one place, with
the cause chained (``raise ... from exc``).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "DeviceTimeoutError",
    "FenceError",
    "FenceFailedError",
    "FencekitError",
    "NotConfirmedError",
    "ProtocolError",
    "SecretError",
    "TransportError",
    "UnreachableError",
    "UnsupportedError",
]


class FencekitError(Exception):
    """Root of every error fencekit raises.

    Attributes:
        device: the fence device (usually its address), when known.
        node: the node being fenced, when known.
        action: the action being carried out, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        node: str | None = None,
        action: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.device = device
        self.node = node
        self.action = action

    def __str__(self) -> str:
        return self.message


class ConfigError(FencekitError):
    """An inventory, option or argument is invalid.

    Attributes:
        where: the file, key or option at fault.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        text = f"{where}: {message}" if where else message
        super().__init__(text)
        self.where = where


class SecretError(FencekitError):
    """A credential source (file, variable or command) gave no secret."""


class TransportError(FencekitError):
    """Talking to a fence device failed before any outcome was known."""


class AuthenticationError(TransportError):
    """The device refused the credentials or the privilege asked for."""


class UnreachableError(TransportError):
    """Nothing answered at the device's address."""


class DeviceTimeoutError(TransportError):
    """The device did not answer within the deadline."""


class ProtocolError(TransportError):
    """The device answered with an error code or a reply we cannot read.

    Attributes:
        code: the device's own error code, when it gave one.
        transient: whether the same request may succeed if repeated.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        transient: bool = False,
        device: str | None = None,
        action: str | None = None,
    ) -> None:
        super().__init__(message, device=device, action=action)
        self.code = code
        self.transient = transient


class UnsupportedError(FencekitError):
    """The device does not support what was asked of it."""


class FenceError(FencekitError):
    """A fence did not end in a verified success."""


class NotConfirmedError(FenceError):
    """A command was sent but the resulting state was never read back.

    Attributes:
        last_state: the last power state read, if any was.
        commands_sent: how many power commands reached the device.
    """

    def __init__(
        self,
        message: str,
        *,
        last_state: str | None = None,
        commands_sent: int = 0,
        device: str | None = None,
        node: str | None = None,
        action: str | None = None,
    ) -> None:
        super().__init__(message, device=device, node=node, action=action)
        self.last_state = last_state
        self.commands_sent = commands_sent


class FenceFailedError(FenceError):
    """Every fence level failed; ``causes`` keeps each level's error."""

    def __init__(
        self,
        message: str,
        *,
        causes: Sequence[BaseException] = (),
        node: str | None = None,
        action: str | None = None,
    ) -> None:
        super().__init__(message, node=node, action=action)
        self.causes = tuple(causes)
