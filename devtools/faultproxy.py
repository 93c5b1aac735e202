"""A loopback HTTP reverse proxy that injects faults, for tests.

Put it in front of a real registry and point a client at proxy.url:

    proxy = FaultProxy(upstream_port)           # or FaultProxy.start("http://127.0.0.1:5000")
    proxy.fail("GET", r"/manifests/", 500, times=2)            # two 500s, then real answers
    proxy.fail("GET", r"/tags/list", 429, times=1, headers={"Retry-After": "1"})
    proxy.cut("GET", r"/blobs/sha256:", after_bytes=500_000, times=1)  # drop mid-body
    proxy.throttle(1 << 20)                     # a 1 MiB/s link for response bodies
    proxy.throttle(None)                        # full speed again
    proxy.log                                   # [LoggedRequest(method, path, status, ...)]
    proxy.close()

Rules can be changed while requests flow. A rule matches when its method
(None: any) equals the request's and its regex is found (re.search) in the
request target, path and query (the digest of a blob upload PUT is in the
query). Rules are tried in the order they were added; a rule that has been
applied `times` times (None: no limit) no longer matches.

Bodies are streamed both ways in pieces, never held whole in memory. Client
connections are kept alive (HTTP/1.1) unless the client says Connection:
close, the response is cut, or the upstream could not be reached; each
request gets its own upstream connection, so a cut or a fault never leaves a
half-read upstream connection behind. Location (and absolute Link) headers
naming the upstream's host:port are rewritten to the proxy's.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PIECE = 64 * 1024

# Headers that belong to one connection, never forwarded.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade", "expect", "proxy-connection"})


@dataclass
class Rule:
    kind: str  # "fail" or "cut"
    method: str | None
    pattern: re.Pattern
    times: int | None
    status: int = 0
    headers: dict = field(default_factory=dict)
    body: bytes | None = None
    after_bytes: int = 0
    hits: int = 0  # how many requests it was applied to

    def matches(self, method: str, target: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.pattern.search(target) is not None


@dataclass
class LoggedRequest:
    """One request the proxy saw. status is what the client was answered (the
    injected status, or the upstream's; 502 when upstream failed). action is
    "forwarded", "failed" (an injected answer), "cut" (the body was broken
    off after `body_bytes`), "upstream-error" or "client-gone"."""
    method: str
    path: str  # without the query
    target: str  # path and query
    status: int
    action: str
    started: float  # time.monotonic() when the request line arrived
    finished: float = 0.0  # when the answer was completely sent or broken off (0: in flight)
    body_bytes: int = 0  # response body bytes sent to the client
    connection: int = 0  # which client connection (1, 2, ...) carried it


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", upstream_timeout: float = 120.0):
        self.upstream_host, self.upstream_port = upstream_host, upstream_port
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self.log: list[LoggedRequest] = []
        self.connections = 0  # client connections accepted
        # The throttled link: bytes per second, and when it is next free.
        self._rate: float | None = None
        self._link_free_at = 0.0
        self._link_lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False

        proxy = self

        class Handler(_ProxyHandler):
            pass

        Handler.proxy = proxy
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"faultproxy-{self.port}",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, upstream_url: str, **kwargs) -> "FaultProxy":
        """A proxy in front of upstream_url (http://host:port)."""
        parts = urllib.parse.urlsplit(upstream_url if "://" in upstream_url else "http://" + upstream_url)
        return cls(parts.port or 80, parts.hostname or "127.0.0.1", **kwargs)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def upstream(self) -> str:
        return f"{self.upstream_host}:{self.upstream_port}"

    # --- rules -----------------------------------------------------------------

    def fail(self, method: str | None, path_regex: str, status: int, times: int | None = 1,
             headers: dict | None = None, body: bytes | None = None) -> Rule:
        """Answer matching requests with `status` (and headers) instead of
        forwarding them. The body defaults to a distribution-style error
        document for statuses >= 400, empty otherwise."""
        if body is None and status >= 400:
            body = json.dumps({"errors": [{"code": "UNKNOWN" if status != 429 else "TOOMANYREQUESTS",
                                           "message": f"injected by faultproxy ({status})"}]}).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        return self._add(Rule("fail", method, re.compile(path_regex), times, status=status,
                              headers=dict(headers or {}), body=body or b""))

    def cut(self, method: str | None, path_regex: str, after_bytes: int, times: int | None = 1) -> Rule:
        """Forward matching requests, but drop the client connection once
        after_bytes of the response body were sent (a response whose body is
        shorter is sent whole; the rule still counts it)."""
        return self._add(Rule("cut", method, re.compile(path_regex), times, after_bytes=after_bytes))

    def throttle(self, bytes_per_second: float | None) -> None:
        """Make response bodies share a link of bytes_per_second (None or 0:
        full speed). Takes effect for the next piece of every transfer."""
        with self._link_lock:
            self._rate = float(bytes_per_second) if bytes_per_second else None
            self._link_free_at = 0.0

    def clear(self) -> None:
        """Remove every fail and cut rule (the throttle stays)."""
        with self._lock:
            self._rules.clear()

    def remove(self, rule: Rule) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def _match(self, method: str, target: str) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, target):
                    rule.hits += 1
                    return rule
        return None

    # --- the log ----------------------------------------------------------------

    def requests(self, method: str | None = None, path_regex: str | None = None) -> list[LoggedRequest]:
        """The logged requests, optionally only those of a method whose target matches."""
        with self._lock:
            entries = list(self.log)
        return [e for e in entries if (method is None or e.method == method.upper())
                and (path_regex is None or re.search(path_regex, e.target))]

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every logged request has been answered completely (a
        client may hold the last byte a moment before the proxy notes it)."""
        deadline = time.monotonic() + timeout
        while any(not e.finished for e in self.requests()):
            if time.monotonic() > deadline:
                raise TimeoutError("faultproxy: requests still in flight")
            time.sleep(0.02)

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.log.append(entry)

    # --- the link -------------------------------------------------------------

    def _piece_size(self) -> int:
        rate = self._rate
        if not rate:
            return PIECE
        # About 20 pieces a second: smooth enough, and the gap between two
        # pieces of one transfer stays far below any sensible read timeout.
        return max(1024, min(PIECE, int(rate / 20)))

    def _take_link(self, nbytes: int) -> None:
        """Wait until nbytes may go over the throttled link."""
        with self._link_lock:
            rate = self._rate
            if not rate:
                return
            now = time.monotonic()
            start = max(now, self._link_free_at)
            self._link_free_at = start + nbytes / rate
            wait = self._link_free_at - now
        if wait > 0:
            time.sleep(wait)

    # --- life -------------------------------------------------------------------

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            (self._open.add if add else self._open.discard)(sock)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            open_sockets = list(self._open)
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaultProxy({self.url} -> {self.upstream})"


class _Cut(Exception):
    """The response was broken off on purpose."""


class _UpstreamBroke(_Cut):
    """The upstream broke its response off."""


class _ClientGone(Exception):
    """The client closed its connection while we were answering."""


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: FaultProxy

    def setup(self) -> None:
        super().setup()
        with self.proxy._lock:
            self.proxy.connections += 1
            self.connection_number = self.proxy.connections
        self.proxy._track(self.connection, True)

    def finish(self) -> None:
        self.proxy._track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, socket.timeout, OSError):
            self.close_connection = True

    # Every method goes through _proxy.
    def __getattr__(self, name: str):
        if name.startswith("do_"):
            return self._proxy
        raise AttributeError(name)

    def _proxy(self) -> None:
        started = time.monotonic()
        target = self.path
        path = urllib.parse.urlsplit(target).path
        entry = LoggedRequest(self.command, path, target, 0, "forwarded", started,
                              connection=self.connection_number)
        self.proxy._record(entry)  # logged on arrival, completed as the answer goes out
        try:
            rule = self.proxy._match(self.command, target)
            if rule is not None and rule.kind == "fail":
                self._drain_request_body()
                entry.status, entry.action = rule.status, "failed"
                self._answer(rule.status, rule.headers, rule.body, entry)
                return
            self._forward(entry, rule.after_bytes if rule is not None else None)
        except _Cut as e:
            entry.action = "upstream-error" if isinstance(e, _UpstreamBroke) else "cut"
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except _ClientGone:
            entry.action = "client-gone"
            self.close_connection = True
        finally:
            entry.finished = time.monotonic()

    # --- request side -----------------------------------------------------------

    def _request_body(self):
        """The request body as an iterator of pieces (None when there is none)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            return None

        def pieces():
            left = length
            while left > 0:
                data = self.rfile.read(min(PIECE, left))
                if not data:
                    raise _ClientGone()
                left -= len(data)
                yield data
        return pieces()

    def _read_chunked(self):
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise _ClientGone()
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            left = size
            while left > 0:
                data = self.rfile.read(min(PIECE, left))
                if not data:
                    raise _ClientGone()
                left -= len(data)
                yield data
            self.rfile.readline(3)  # the CRLF after the chunk

    def _drain_request_body(self) -> None:
        body = self._request_body()
        for _ in body or ():
            pass

    # --- answering ----------------------------------------------------------------

    def _answer(self, status: int, headers: dict, body: bytes, entry: LoggedRequest) -> None:
        self.send_response_only(status)
        names = {k.lower() for k in headers}
        for k, v in headers.items():
            self.send_header(k, v)
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            entry.body_bytes = len(body)
            self._send(body)
        self._flush()

    def _forward(self, entry: LoggedRequest, cut_after: int | None) -> None:
        proxy = self.proxy
        headers = {}
        for k, v in self.headers.items():
            if k.lower() in HOP_BY_HOP or k.lower() == "host":
                continue
            headers[k] = v
        headers["Host"] = proxy.upstream
        body = self._request_body()
        chunked = body is not None and "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        if chunked:
            headers.pop("Content-Length", None)
            headers["Transfer-Encoding"] = "chunked"
        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port,
                                              timeout=proxy.upstream_timeout)
        try:
            try:
                upstream.request(self.command, self.path, body=body, headers=headers, encode_chunked=chunked)
                response = upstream.getresponse()
            except _ClientGone:
                raise
            except (OSError, http.client.HTTPException) as e:
                self.close_connection = True
                entry.status, entry.action = 502, "upstream-error"
                self._answer(502, {"Content-Type": "text/plain"}, f"faultproxy: upstream: {e}".encode(), entry)
                return
            entry.status = response.status
            self._relay(response, entry, cut_after)
        finally:
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse, entry: LoggedRequest, cut_after: int | None) -> None:
        proxy = self.proxy
        has_body = self.command != "HEAD" and response.status not in (204, 304) and response.status >= 200
        length = response.getheader("Content-Length")
        rechunk = has_body and length is None
        self.send_response_only(response.status, response.reason)
        for k, v in response.getheaders():
            lower = k.lower()
            if lower in HOP_BY_HOP:
                continue
            if lower in ("location", "link", "content-location"):
                v = _rewrite(v, proxy.upstream_host, proxy.upstream_port, proxy.host)
            self.send_header(k, v)
        if rechunk:
            self.send_header("Transfer-Encoding", "chunked")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not has_body:
            self._flush()
            return
        sent = 0
        while True:
            want = proxy._piece_size()
            if cut_after is not None:
                want = min(want, max(cut_after - sent, 0)) or 1
            try:
                data = response.read1(want) if want else b""
            except (OSError, http.client.HTTPException):
                # The upstream broke off: so do we.
                raise _UpstreamBroke() from None
            if not data:
                break
            if cut_after is not None and sent + len(data) > cut_after:
                data = data[:cut_after - sent]
            if data:
                proxy._take_link(len(data))
                sent += len(data)
                entry.body_bytes = sent
                self._send(data, chunk=rechunk)
            if cut_after is not None and sent >= cut_after:
                self._flush()
                raise _Cut()
        if rechunk:
            self._send(b"0\r\n\r\n", raw=True)
        self._flush()

    def _send(self, data: bytes, chunk: bool = False, raw: bool = False) -> None:
        try:
            if chunk and not raw:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            else:
                self.wfile.write(data)
        except OSError:
            raise _ClientGone() from None

    def _flush(self) -> None:
        try:
            self.wfile.flush()
        except OSError:
            raise _ClientGone() from None


def _rewrite(value: str, upstream_host: str, upstream_port: int, mine: str) -> str:
    """Point absolute URLs at the upstream to the proxy instead."""
    hosts = {upstream_host, "127.0.0.1", "localhost"}
    pattern = r"//(?:%s):%d(?![0-9])" % ("|".join(re.escape(h) for h in sorted(hosts)), upstream_port)
    return re.sub(pattern, "//" + mine, value)
