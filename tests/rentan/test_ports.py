"""Ports for the processes a stack starts: free, distinct, and out of the kernel's way."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from core.settings import Settings
from rentan.stack import StackError, check_ports, free_ports


def _ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    ports = free_ports(12)
    assert len(set(ports)) == 12
    low, high = _ephemeral_range()
    # The kernel gives outgoing connections ports from [low, high]; a port chosen there can be
    # taken by any client before the server binds it.
    assert all(not low <= port <= high for port in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_never_chosen() -> None:
    taken = [socket.socket() for _ in range(50)]
    try:
        held = set()
        for sock in taken:
            sock.bind(("127.0.0.1", free_ports(1)[0]))
            sock.listen()
            held.add(sock.getsockname()[1])
        for _ in range(20):
            assert not held & set(free_ports(10))
    finally:
        for sock in taken:
            sock.close()


def test_check_ports_names_a_taken_metrics_port_only_when_a_worker_runs(tmp_path: Path) -> None:
    temporal, ui, api, sim, metrics = free_ports(5)
    settings = Settings(
        data_dir=tmp_path,
        temporal_address=f"127.0.0.1:{temporal}",
        temporal_ui_port=ui,
        api_port=api,
        bpjs_base_url=f"http://127.0.0.1:{sim}",
        metrics_address=f"127.0.0.1:{metrics}",
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", metrics))
        taken.listen()
        with pytest.raises(StackError, match=f"port {metrics} \\(worker metrics\\)") as refused:
            check_ports(settings)
        assert "RENTAN_METRICS_ADDRESS" in str(refused.value)
        check_ports(settings, with_worker=False)  # `rentan up --no-worker` serves no metrics
        check_ports(settings.model_copy(update={"metrics_address": ""}))  # none wanted
