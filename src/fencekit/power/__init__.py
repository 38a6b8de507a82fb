"""Power fencing: drivers, and verified actions on any of them."""

from fencekit.power.base import PowerDriver
from fencekit.power.operate import Verification, attempt, operate

__all__ = ["PowerDriver", "Verification", "attempt", "operate"]
