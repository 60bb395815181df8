"""This machine's addresses as phones on the venue Wi-Fi see them (read locally, no traffic)."""

from __future__ import annotations

import ipaddress
import socket
import struct

SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address


def lan_addresses() -> list[str]:
    """IPv4 addresses of this machine's interfaces, loopback and link-local left out.

    The hostname alone is not enough: Debian and Ubuntu map it to 127.0.1.1.
    """
    found: list[str] = []
    for address in _interface_addresses() + _hostname_addresses():
        ip = ipaddress.ip_address(address)
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified) and address not in found:
            found.append(address)
    return found


def is_loopback_host(host: str | None) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _interface_addresses() -> list[str]:
    try:
        import fcntl
    except ImportError:  # not Linux/Unix
        return []
    addresses: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # never sends anything
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
            except OSError:  # interface down or without IPv4
                continue
            addresses.append(socket.inet_ntoa(answer[20:24]))
    return addresses


def _hostname_addresses() -> list[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return []
    return [str(info[4][0]) for info in infos]
