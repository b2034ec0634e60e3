"""Cluster DNS (CoreDNS's part) on the pod network's gateway, answered from the store.

Pods get it as their nameserver (through dockerd's embedded DNS, which forwards what it does not know)
with the search path `<ns>.svc.cluster.local svc.cluster.local cluster.local` and `ndots:5`, so `svc`,
`svc.ns` and `svc.ns.svc.cluster.local` all resolve, as in a real pod. A Service name answers with the
IPs of the ready pods its selector matches (every Service behaves as a headless one: there is no
kube-proxy, so no clusterIP routing and no port translation); `<pod>.<subdomain>.<ns>.svc.cluster.local`
answers a StatefulSet pod's own IP. Anything else is NXDOMAIN (no upstream: no internet here).
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from .resources import POD, SERVICE
from .store import Store

log = logging.getLogger("migrator.sandbox.kubeapi.dns")

DOMAIN = "cluster.local"
TTL = 5


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _matches(selector: dict[str, str], pod: dict[str, Any]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def resolve(store: Store, name: str) -> list[str] | None:
    """A-record answers for `name`, or None for NXDOMAIN."""
    labels = name.rstrip(".").lower().split(".")
    if labels[-3:] != ["svc", "cluster", "local"] or len(labels) not in (5, 6):
        return None
    ns, svc_name = labels[-4], labels[-5]
    svc = store.get(SERVICE.key, ns, svc_name)
    if svc is None:
        return None
    pods = [p for p in store.select(POD.key, ns) if (p.get("status") or {}).get("podIP")]
    spec = svc.get("spec") or {}
    if len(labels) == 6:  # <hostname>.<subdomain>.<ns>.svc.cluster.local
        host = labels[0]
        return [p["status"]["podIP"] for p in pods
                if (p.get("spec") or {}).get("hostname") == host and (p.get("spec") or {}).get("subdomain") == svc_name
                and (_ready(p) or spec.get("publishNotReadyAddresses"))] or None
    selector = spec.get("selector") or {}
    ips = [p["status"]["podIP"] for p in pods if _matches(selector, p)
           and (_ready(p) or spec.get("publishNotReadyAddresses"))]
    return ips  # an existing Service without ready pods: NOERROR, no answers


class ClusterDNS:
    def __init__(self, store: Store, host: str, port: int = 53) -> None:
        self.store = store
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="cluster-dns", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        import dns.exception
        import dns.flags
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
                reply = dns.message.make_response(query)
                reply.flags |= dns.flags.AA
                question = query.question[0]
                answers = resolve(self.store, question.name.to_text())
                if answers is None:
                    reply.set_rcode(dns.rcode.NXDOMAIN)
                elif question.rdtype == dns.rdatatype.A and answers:
                    reply.answer.append(dns.rrset.from_text_list(question.name, TTL, "IN", "A", answers))
                self.sock.sendto(reply.to_wire(), peer)
            except (dns.exception.DNSException, IndexError, OSError) as exc:
                log.debug("dns: bad query from %s: %s", peer, exc)
