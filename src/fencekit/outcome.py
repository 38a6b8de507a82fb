"""Values that describe power state, actions and fence outcomes."""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fencekit.errors import FencekitError

__all__ = ["Action", "FenceOutcome", "PowerState"]


class PowerState(enum.Enum):
    """A node's power state as read back from its fence device."""

    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"


class Action(enum.Enum):
    """What a fence device is asked to do."""

    STATUS = "status"
    ON = "on"
    OFF = "off"
    REBOOT = "reboot"
    DIAG = "diag"

    @classmethod
    def parse(cls, text: str) -> Action:
        """Return the action named by ``text``.

        Raises:
            ValueError: ``text`` names no action.
        """
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(a.value for a in cls)
            raise ValueError(
                f"unknown action {text!r} (expected one of {names})"
            ) from None


@dataclasses.dataclass(frozen=True)
class FenceOutcome:
    """The result of one action on one fence device, or one fence.

    ``verified`` is true only when the final state was read back from the
    device and matched what the action asked for. An outcome that is not
    verified carries the ``reason``.

    Attributes:
        node: the node acted on (or the device address without inventory).
        device: the fence device used.
        method: the fencing method (``ipmi``, ``redfish``...).
        action: the action asked for.
        verified: whether the result was read back and matched.
        state: the last power state read.
        attempts: how many times the action was tried.
        commands_sent: how many power commands reached the device.
        duration: seconds from the request to the outcome.
        reason: why the outcome is not a success, or a note on a success.
        power_on_failed: for ``reboot``, the node was fenced but did not
            come back on.
        error: the fencekit error behind a failure (not serialised).
    """

    node: str
    device: str
    method: str
    action: Action
    verified: bool
    state: PowerState = PowerState.UNKNOWN
    attempts: int = 1
    commands_sent: int = 0
    duration: float = 0.0
    reason: str | None = None
    power_on_failed: bool = False
    error: FencekitError | None = dataclasses.field(
        default=None, compare=False, repr=False
    )

    @property
    def success(self) -> bool:
        """Whether the action is done and was verified."""
        return self.verified

    def to_dict(self) -> dict[str, Any]:
        """Return the outcome as plain JSON-ready values."""
        data = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "error"
        }
        data["action"] = self.action.value
        data["state"] = self.state.value
        data["success"] = self.success
        data["duration"] = round(self.duration, 6)
        return data
