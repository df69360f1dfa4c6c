"""Loaded by the offline test's child processes (this folder is first on their PYTHONPATH): every outbound
connection that is not to loopback is refused and written down, so a library that phones home fails the test."""

from __future__ import annotations

import ipaddress
import os
import socket

_LOG = os.environ.get("TUNEFORGE_NET_LOG", "")
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _is_local(address: object) -> bool:
    if isinstance(address, str):  # a unix socket path
        return True
    host = address[0] if isinstance(address, tuple) and address else ""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _record(what: str) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as fh:
            fh.write(what + "\n")


def connect(self: socket.socket, address: object) -> None:
    if not _is_local(address):
        _record(f"connect {address!r}")
        raise ConnectionRefusedError(f"offline test: outbound connection to {address!r} refused")
    return _connect(self, address)


def connect_ex(self: socket.socket, address: object) -> int:
    if not _is_local(address):
        _record(f"connect_ex {address!r}")
        return 111  # ECONNREFUSED
    return _connect_ex(self, address)


def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
    if host not in (None, "localhost", "127.0.0.1", "::1", "0.0.0.0") and not str(host).startswith("127."):
        _record(f"getaddrinfo {host!r}")
        raise socket.gaierror(socket.EAI_NONAME, f"offline test: name lookup of {host!r} refused")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = connect  # type: ignore[method-assign]
socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
