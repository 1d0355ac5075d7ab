"""Ports for the emulators: never one the kernel may hand to an outgoing connection, never the same twice."""

from __future__ import annotations

import socket

import pytest

from localcloud import services


def test_ports_are_below_the_ephemeral_range_bindable_and_distinct() -> None:
    low = services._ephemeral_floor()
    ports = [services.free_port() for _ in range(200)]

    assert len(set(ports)) == len(ports)
    assert all(services._LISTEN_FLOOR <= port < low for port in ports), (low, sorted(ports)[-5:])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", ports[-1]))


def test_a_port_someone_listens_on_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            idle = probe.getsockname()[1]  # free again once the probe closes
        # Make the random choice land on the busy port first
        choices = iter([busy, busy, idle])
        monkeypatch.setattr(services.random, "randrange", lambda _a, _b: next(choices))
        monkeypatch.setattr(services, "_ephemeral_floor", lambda: 65_535)
        monkeypatch.setattr(services, "_LISTEN_FLOOR", 1024)
        monkeypatch.setattr(services, "_HANDED_OUT", set())

        assert services.free_port() == idle
