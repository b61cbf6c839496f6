"""What the beamline IOC and the code that starts it agree on, without importing caproto.

The IOC (:mod:`.ioc`) needs caproto, an extra (``pip install insitu[beamline]``); the process
launcher (:mod:`.ioc_process`) and the in-process beamline do not, so the names both ends
share live here.
"""

from __future__ import annotations

__all__ = ["DEFAULT_PREFIX", "LOOPBACK", "READY_LINE", "server_environment"]

#: PV prefix of the simulated 2-BM devices.
DEFAULT_PREFIX = "SIM2BM:"
#: Printed on stdout once the IOC serves (the bench waits for it before connecting).
READY_LINE = "beamline_ioc ready"
#: The only interface the IOC serves on.
LOOPBACK = "127.0.0.1"


def server_environment(port: int) -> dict[str, str]:
    """EPICS variables that confine an IOC to 127.0.0.1 and to one UDP/TCP port.

    Parameters
    ----------
    port : int
        Channel Access server port (UDP search and, when free, TCP).

    Returns
    -------
    dict
        Environment variables to set before the server starts.
    """
    return {
        # caproto binds the UDP search socket to EPICS_CA_SERVER_PORT; EPICS_CAS_SERVER_PORT
        # is the name libCAS uses, set as well so that either reading agrees.
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CAS_SERVER_PORT": str(port),
        "EPICS_CAS_INTF_ADDR_LIST": LOOPBACK,
        "EPICS_CAS_BEACON_ADDR_LIST": LOOPBACK,
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    }
