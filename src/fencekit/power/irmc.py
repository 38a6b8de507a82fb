"""Fujitsu iRMC: Redfish first, IPMI when Redfish cannot be reached.

iRMC S6 from firmware 2.00 ships with IPMI over LAN switched off, so
Redfish is the path tried first. A device may also be given IPMI
credentials: when its Redfish service cannot be reached at all (nothing
accepts the connection), the driver switches to IPMI for the rest of its
life and says so in a WARNING and in its ``method``, which every outcome
carries: ``irmc-redfish`` or ``irmc-ipmi``.

Only "nothing answered" switches paths. A refused password, an untrusted
certificate or a refused command are answers: they are reported as they
are, never hidden behind the other protocol.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from fencekit._log import get_logger
from fencekit.errors import ConfigError, UnreachableError
from fencekit.outcome import Action, PowerState
from fencekit.power.base import PowerDriver
from fencekit.power.redfish import RedfishDriver
from fencekit.secrets import Secret

__all__ = ["IrmcDriver"]

T = TypeVar("T")

# With a fallback configured, an unanswered connection may use only this
# much of the deadline, so that IPMI still has time to do the work.
_FALLBACK_CONNECT: Final = 3.0


class IrmcDriver:
    """Power control of a PRIMERGY server through its iRMC.

    Args:
        host: the iRMC's address.
        username: the iRMC account.
        password: its password.
        port: the Redfish HTTPS port.
        system: the Redfish system id (``0`` on iRMC by default).
        ca_file: the CA that signed the iRMC's certificate.
        insecure: do not verify the iRMC's certificate.
        auth: Redfish authentication: ``auto``, ``session`` or ``basic``.
        ipmi_fallback: use IPMI when Redfish cannot be reached.
        ipmi_port: the IPMI UDP port (623).
        ipmi_username: the IPMI account, the Redfish one by default.
        ipmi_password: its password, the Redfish one by default.
        ipmi_cipher: pin the IPMI cipher suite (3 or 17).
        connect_timeout: seconds a Redfish connection may take to open;
            3 s by default when a fallback is configured.

    Raises:
        ConfigError: an option is invalid.
    """

    def __init__(
        self,
        host: str,
        *,
        username: str,
        password: Secret,
        port: int = 443,
        system: str | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        auth: str = "auto",
        ipmi_fallback: bool = False,
        ipmi_port: int | None = None,
        ipmi_username: str | None = None,
        ipmi_password: Secret | None = None,
        ipmi_cipher: int | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        ipmi_given = (ipmi_port, ipmi_username, ipmi_password, ipmi_cipher)
        if not ipmi_fallback and any(v is not None for v in ipmi_given):
            raise ConfigError(
                "IPMI credentials given but ipmi_fallback is off",
                where="ipmi_fallback",
            )
        if ipmi_password is not None and not isinstance(ipmi_password, Secret):
            raise ConfigError(
                "must come from a credential source, never inline",
                where="ipmi_password",
            )
        if connect_timeout is None and ipmi_fallback:
            connect_timeout = _FALLBACK_CONNECT

        self._redfish = RedfishDriver(
            host,
            username=username,
            password=password,
            port=port,
            system=system,
            ca_file=ca_file,
            insecure=insecure,
            auth=auth,
            profile="irmc",
            connect_timeout=connect_timeout,
        )
        self._ipmi: PowerDriver | None = None
        if ipmi_fallback:
            from fencekit.power.ipmi import IpmiDriver

            self._ipmi = IpmiDriver(
                host,
                username=username if ipmi_username is None else ipmi_username,
                password=password if ipmi_password is None else ipmi_password,
                port=623 if ipmi_port is None else ipmi_port,
                cipher=ipmi_cipher,
            )
        self.device = self._redfish.device
        self.method = "irmc"
        self._active: PowerDriver | None = None

    def __repr__(self) -> str:
        return f"IrmcDriver({self.device!r}, method={self.method!r})"

    async def __aenter__(self) -> IrmcDriver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def path(self) -> str | None:
        """``redfish`` or ``ipmi`` once chosen, else None."""
        if self._active is None:
            return None
        return "ipmi" if self._active is self._ipmi else "redfish"

    async def read_state(self, timeout: float) -> PowerState:
        """Read the power state on the path in use.

        Raises:
            TransportError: neither path could read it.
        """

        def call(driver: PowerDriver, left: float) -> Awaitable[PowerState]:
            return driver.read_state(left)

        return await self._on_path(call, timeout)

    async def send(self, action: Action, timeout: float) -> None:
        """Send ``action`` on the path in use.

        Raises:
            TransportError: the command was not accepted, or no answer.
            UnsupportedError: the path cannot do ``action``.
        """

        def call(driver: PowerDriver, left: float) -> Awaitable[None]:
            return driver.send(action, left)

        await self._on_path(call, timeout)

    async def close(self) -> None:
        """Close both paths; safe to call twice."""
        await self._redfish.close()
        if self._ipmi is not None:
            await self._ipmi.close()

    async def _on_path(
        self,
        call: Callable[[PowerDriver, float], Awaitable[T]],
        timeout: float,
    ) -> T:
        if self._active is not None:
            return await call(self._active, timeout)

        start = time.monotonic()
        try:
            result = await call(self._redfish, timeout)
        except UnreachableError as exc:
            if self._ipmi is None or self._redfish.reached:
                raise
            self._choose(self._ipmi, reason=str(exc))
            left = timeout - (time.monotonic() - start)
            return await call(self._ipmi, left)
        self._choose(self._redfish)
        return result

    # TODO: the path is chosen once per driver; a long-lived driver that
    # fell back to IPMI does not return to Redfish when it comes back,
    # because nothing probes Redfish again after the switch.
    def _choose(self, driver: PowerDriver, reason: str | None = None) -> None:
        self._active = driver
        self.method = f"irmc-{self.path}"
        if reason is not None:
            get_logger(__name__).warning(
                "irmc_ipmi_fallback",
                device=self.device,
                method=self.method,
                reason=reason,
            )
