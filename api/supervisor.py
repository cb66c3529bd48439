"""`ordergate serve --workers N`: uvicorn's supervisor with one listening socket per worker.

uvicorn's workers share one listening socket, and whichever is awake first accepts every
connection waiting (asyncio accepts up to the backlog per wake-up): clients that keep their
connections open, as load balancers and HTTP clients do, ended up mostly on one worker while
the others idled (bench/workers.py: 86% and 21% CPU, 2 workers no faster than 1). Here each
worker slot listens on its own socket bound to the same address with SO_REUSEPORT, and the
kernel spreads new connections across them evenly. The supervision — health checks, a dead
worker replaced, SIGHUP restarting them one by one, shutdown — stays uvicorn's; only which
socket a worker gets differs. Linux (and the BSDs) only; elsewhere `serve` shares one socket.
"""

from __future__ import annotations

import os
import socket

from uvicorn import Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

STARTUP_FAILURE = 3  # uvicorn's exit code for a worker that could not start


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT") and os.name == "posix"


def slot_sockets(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """`count` listening sockets on one address (the port of the first when `port` is 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(backlog)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class BalancedMultiprocess(Multiprocess):
    def __init__(self, config: Config, slots: list[socket.socket]) -> None:
        super().__init__(config, sockets=[])
        self.slots = slots

    def _spawn(self, slot: int) -> Process:
        process = Process(self.config, [self.slots[slot]])
        process.start()
        return process

    def init_processes(self) -> None:
        for slot in range(self.processes_num):
            self.processes.append(self._spawn(slot))

    def restart_all(self) -> None:
        """Each worker replaced in turn, the new one ready before the old one goes."""
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._spawn(slot)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                return
            old.terminate()
            old.join()
            self.processes[slot] = new

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for slot, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                self.should_exit.set()  # would fail the same way on every restart
                return
            if self.should_exit.is_set():
                return
            self.processes[slot] = self._spawn(slot)


def run(config: Config) -> None:
    """Serve `config` (an import string, `config.workers` > 1) with a socket per worker."""
    slots = slot_sockets(config.host, config.port, config.workers, config.backlog)
    try:
        BalancedMultiprocess(config, slots).run()
    finally:
        for sock in slots:
            sock.close()
