"""LAN addresses for the printed URLs and the loopback hint, read without any traffic."""

from __future__ import annotations

import ipaddress

from board.netaddr import is_loopback_host, lan_addresses


def test_lan_addresses_leave_out_loopback_and_link_local() -> None:
    """What is printed for phones is never 127.x, 169.254.x or 0.0.0.0."""
    for address in lan_addresses():
        ip = ipaddress.ip_address(address)
        assert not (ip.is_loopback or ip.is_link_local or ip.is_unspecified), address


def test_loopback_hosts() -> None:
    """127.x, ::1 and localhost are this computer only; LAN and public hosts are not."""
    for host in ("127.0.0.1", "127.0.1.1", "[::1]", "localhost", None):
        assert is_loopback_host(host), host
    for host in ("192.168.1.20", "10.0.0.5", "atelier.example", "[fe80::1]"):
        assert not is_loopback_host(host), host
