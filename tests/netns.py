"""A network namespace a test makes for itself, for code that must run the way it would on another
machine (an EC2 instance's bootstrap): `ip netns add`, a veth pair with one end moved into it, and
the two ends addressed in a private /30 picked at random among the ones this host does not route
already. Before anything is sent, `ip route get` must show each address reached through the veth
(from the host: the namespace's end; from inside: the host's end), so a test can never talk to
anything but loopback or the namespace it made. `TcpRelay` makes a loopback-only server (the
session's moto server) reachable from inside, on the host's end of the veth.

Needs root and iproute2 (`ip`); `unavailable()` says why not, for a skip.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import uuid
from dataclasses import dataclass

POOL = ipaddress.ip_network("10.0.0.0/8")     # private; a /30 inside it that no route covers is picked


def unavailable() -> str | None:
    """Why a namespace cannot be made here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root to make a network namespace (ip netns add)"
    if not shutil.which("ip"):
        return "needs iproute2 (`ip`) to make a network namespace"
    return None


def _ip(*args: str, netns: str | None = None) -> str:
    argv = ["ip", *(("-n", netns) if netns else ()), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _routed() -> list[ipaddress.IPv4Network]:
    """Every IPv4 prefix this host routes somewhere, default routes left out (all tables)."""
    out = []
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = route.get("dst", "default")
        if dst != "default":
            out.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
    for item in json.loads(_ip("-j", "-4", "addr", "show") or "[]"):
        for a in item.get("addr_info", []):
            out.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    return out


def pick_subnet(rng: random.Random | None = None, tries: int = 64) -> ipaddress.IPv4Network:
    rng = rng or random.Random()
    taken = _routed()
    for _ in range(tries):
        base = int(POOL.network_address) + 4 * rng.randrange(1, POOL.num_addresses // 4 - 1)
        net = ipaddress.ip_network(f"{ipaddress.ip_address(base)}/30")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError(f"no free /30 in {POOL} after {tries} tries")


@dataclass
class Netns:
    name: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str

    @property
    def path(self) -> str:
        """The namespace's file (what `nsenter --net=` and a bind mount take)."""
        return f"/run/netns/{self.name}"

    def route_dev(self, address: str, inside: bool = False) -> str:
        """The device `ip route get` picks for `address` (from the host, or from inside)."""
        (route,) = json.loads(_ip("-j", "route", "get", address, netns=self.name if inside else None))
        return route["dev"]

    def check_routes(self) -> None:
        """Both ends reach each other through the veth and nothing else (else: RuntimeError)."""
        for address, inside, want in ((self.ns_ip, False, self.host_if), (self.host_ip, True, self.ns_if)):
            dev = self.route_dev(address, inside)
            if dev != want:
                where = "inside the namespace" if inside else "on the host"
                raise RuntimeError(f"{address} routes through {dev} {where}, not the veth {want}")

    def delete(self) -> None:
        """The namespace goes, and with it both ends of the veth."""
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=20)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=20)  # if still there


def make(rng: random.Random | None = None) -> Netns:
    """A fresh namespace with a veth pair in a free /30; `delete()` it when done."""
    tag = uuid.uuid4().hex[:8]
    net = pick_subnet(rng)
    host_ip, ns_ip = (str(a) for a in net.hosts())
    ns = Netns(f"provisioner-test-{tag}", f"pv{tag}h", f"pv{tag}n", host_ip, ns_ip)
    _ip("netns", "add", ns.name)
    try:
        _ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns.ns_if)
        _ip("link", "set", ns.ns_if, "netns", ns.name)
        _ip("addr", "add", f"{host_ip}/30", "dev", ns.host_if)
        _ip("link", "set", ns.host_if, "up")
        _ip("addr", "add", f"{ns_ip}/30", "dev", ns.ns_if, netns=ns.name)
        _ip("link", "set", ns.ns_if, "up", netns=ns.name)
        _ip("link", "set", "lo", "up", netns=ns.name)
        ns.check_routes()
    except Exception:
        ns.delete()
        raise
    return ns


class TcpRelay:
    """Listens on (host, any port) and passes every connection on to `target` (a loopback server)."""

    def __init__(self, host: str, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server((host, 0))
        self.host, self.port = self.listener.getsockname()[:2]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.peers: list[str] = []              # the address of every client it relayed

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "TcpRelay":
        self._spawn(self._accept)
        return self

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, peer = self.listener.accept()
            except OSError:
                return                          # closed by stop()
            self.peers.append(peer[0])
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._spawn(self._connection, client, upstream)

    def _connection(self, client: socket.socket, upstream: socket.socket) -> None:
        back = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
        back.start()
        self._pipe(client, upstream)
        back.join()
        client.close()
        upstream.close()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
                try:
                    sock.shutdown(how)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
