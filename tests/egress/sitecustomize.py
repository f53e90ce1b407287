"""Loaded by every Python process of a guarded test run (via PYTHONPATH): records and refuses
any connection or name lookup that would leave this machine."""

import ipaddress
import os
import sys

_LOG = os.environ.get("CELLPULSE_EGRESS_LOG", "")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _is_local(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(what: str) -> None:
    if _LOG:
        with open(_LOG, "a") as fh:
            fh.write(f"{os.getpid()} {sys.argv[:2]} {what}\n")
    raise ConnectionRefusedError(f"egress refused by test guard: {what}")


def _audit(event: str, args: tuple) -> None:
    if event == "socket.getaddrinfo" and not _is_local(args[0]):
        _refuse(f"getaddrinfo {args[0]!r}")
    elif event in ("socket.connect", "socket.sendto"):
        address = args[1]
        if isinstance(address, tuple) and not _is_local(address[0]):
            _refuse(f"{event} {address!r}")
    elif event == "socket.gethostbyname" and not _is_local(args[0]):
        _refuse(f"gethostbyname {args[0]!r}")


if _LOG:
    sys.addaudithook(_audit)
