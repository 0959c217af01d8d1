"""A fault-injecting HTTP proxy in front of moto_server: the EC2 answers moto never gives.

moto emulates EC2's API but never runs out of capacity, never hits an account limit and never
takes a spot instance back. Real EC2 does all three, and cumulo's failover and preemption handling
exist for them. This proxy sits between boto3 and moto on loopback (real HTTP both ways): requests
it has a rule for get EC2's own error response (status, XML shape and code as EC2 sends them);
everything else is forwarded to moto untouched. DescribeInstances answers can be rewritten so that
an instance moto has terminated reads as EC2 shows a spot interruption (its state reason).

Rules match on the EC2 action, the region (from the SigV4 credential scope, as EC2 routes by
endpoint) and, optionally, the availability zone and instance type of a RunInstances.
"""

from __future__ import annotations

import http.client
import re
import threading
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# EC2 sends server-side refusals (capacity) as 500 and account limits as 400.
STATUS = {"InsufficientInstanceCapacity": 500, "InsufficientCapacity": 500, "Unavailable": 503}
_REGION = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")


@dataclass
class Rule:
    code: str
    message: str
    action: str = "RunInstances"
    region: str | None = None
    zone: str | None = None
    instance_type: str | None = None
    hits: int = 0

    def matches(self, action: str, region: str | None, params: dict[str, str]) -> bool:
        if action != self.action or (self.region and region != self.region):
            return False
        if self.zone and params.get("Placement.AvailabilityZone") != self.zone:
            return False
        return not (self.instance_type and params.get("InstanceType") != self.instance_type)


@dataclass
class EC2Faults:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    #: instance id -> (state reason code, message) shown by DescribeInstances
    reasons: dict[str, tuple[str, str]] = field(default_factory=dict)
    seen: list[tuple[str, str | None, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def fail(self, code: str, message: str, **match: str) -> Rule:
        rule = Rule(code, message, **match)
        self.rules.append(rule)
        return rule

    def interrupt_spot(self, instance_id: str) -> None:
        """From now on DescribeInstances shows this instance's end as EC2 shows a spot interruption
        (terminate it in moto as well, so its state is terminated)."""
        self.reasons[instance_id] = ("Server.SpotInstanceTermination",
                                     "Server.SpotInstanceTermination: Spot instance termination")

    def launches(self, region: str | None = None) -> list[dict[str, str]]:
        return [p for a, r, p in self.seen if a == "RunInstances" and (region is None or r == region)]

    # -- serving -------------------------------------------------------------------------------
    def start(self) -> EC2Faults:
        faults = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                self._handle()

            def do_POST(self):  # noqa: N802
                self._handle()

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                params = {k: v[0] for k, v in parse_qs(body.decode("latin-1")).items()}
                action = params.get("Action", "")
                m = _REGION.search(self.headers.get("Authorization", ""))
                region = m.group(1) if m else None
                if action:
                    faults.seen.append((action, region, params))
                for rule in faults.rules:
                    if rule.matches(action, region, params):
                        rule.hits += 1
                        return self._send(STATUS.get(rule.code, 400), _error_xml(rule.code, rule.message),
                                          "text/xml;charset=UTF-8")
                status, headers, data = faults._forward(self.command, self.path, dict(self.headers), body)
                if action == "DescribeInstances" and status == 200 and faults.reasons:
                    data = _with_reasons(data, faults.reasons)
                self._send(status, data, headers.get("Content-Type", "text/xml"))

            def _send(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _forward(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        up = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
        try:
            headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
            conn.request(method, path, body=body, headers=headers)
            res = conn.getresponse()
            return res.status, dict(res.getheaders()), res.read()
        finally:
            conn.close()


def _error_xml(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>").encode()


def _with_reasons(data: bytes, reasons: dict[str, tuple[str, str]]) -> bytes:
    root = ET.fromstring(data)
    ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
    q = (lambda t: f"{{{ns}}}{t}") if ns else (lambda t: t)
    for item in root.iter(q("item")):
        iid = item.find(q("instanceId"))
        if iid is None or iid.text not in reasons:
            continue
        code, message = reasons[iid.text]
        reason = item.find(q("stateReason"))
        if reason is None:
            reason = ET.SubElement(item, q("stateReason"))
        for child in list(reason):
            reason.remove(child)
        ET.SubElement(reason, q("code")).text = code
        ET.SubElement(reason, q("message")).text = message
        text = item.find(q("reason"))  # the older free-text field says the same
        if text is not None:
            text.text = message
    if ns:
        ET.register_namespace("", ns)
    return ET.tostring(root, xml_declaration=True, encoding="UTF-8")
