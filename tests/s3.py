"""A real S3-compatible server for the tests: moto's server mode (the one zarr-python and s3fs test
against), started in this process on 127.0.0.1 and a free port, configured for the code under
test only through the standard AWS variables."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KEY_ID = "AKIDLINKEDOUTTEST001"  # moto accepts any pair; these only have to look real
SECRET = "linkedout/test/secret/value/0123456789abcdef"


@dataclass
class S3Server:
    endpoint: str
    server: object

    def env(self, **changes: str) -> dict[str, str]:
        """The AWS variables that point the code at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            **changes,
        }

    def client(self):  # noqa: ANN201 - a boto3 S3 client
        """boto3, straight to the server (not through the code under test)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )

    def bucket(self, name: str | None = None) -> str:
        """A new, empty bucket; its name."""
        name = name or f"linkedout-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def upload(self, source: Path, bucket: str, prefix: str) -> str:
        """Every file under `source` put under s3://bucket/prefix/; that URL."""
        client = self.client()
        for path in sorted(source.rglob("*")):
            if path.is_file():
                key = f"{prefix}/{path.relative_to(source).as_posix()}"
                client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        return f"s3://{bucket}/{prefix}"

    def stop(self) -> None:
        self.server.stop()  # type: ignore[attr-defined]


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on loopback, stopped on exit."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}", server)
    finally:
        server.stop()


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`values` set in os.environ for the block (restored after)."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def access_key(endpoint: str) -> tuple[tuple[str, str], str]:
    """A user with every right on the server: ((its key id, its secret), a wrong secret for the
    same key id). The server checks them only after `check_signatures`."""
    import json

    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    name = f"extractor-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName=name, PolicyName="all", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return (key["AccessKeyId"], key["SecretAccessKey"]), key["SecretAccessKey"][:-4] + "AAAA"


def check_signatures(endpoint: str, after: bytes) -> None:
    """moto: check signatures after `after` more requests (b"inf": never)."""
    import urllib.request

    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=after,
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(request).read()


@dataclass
class Wire:
    """The wire to the test S3 server: a proxy that breaks on demand, a bucket, the server."""

    proxy: FaultyProxy
    bucket: str
    s3: S3Server


SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class FaultyProxy:
    """A loopback HTTP proxy in front of the S3 server that breaks the wire on demand: `mode`
    "forward" (a healthy store), "every:N" (every Nth request answered 503 SlowDown),
    "slowdown" (every request answered 503 SlowDown); stop() refuses connections (the server is
    gone) and start() listens again on the same port (it is back); `go_after(prefix, n)` lets n
    more requests for paths under `prefix` through, then drops every connection until start().
    `answered_503` counts; `requests_seen` lists each request it was sent (method, path)."""

    def __init__(self, upstream: str) -> None:
        from urllib.parse import urlparse

        target = urlparse(upstream)
        self.host, self.port_up = target.hostname, target.port
        self.mode = "forward"
        self.requests = 0
        self.answered_503 = 0
        self.requests_seen: list[tuple[str, str]] = []
        self._gone_after: tuple[str, int] | None = None
        self._server = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import threading
        from http.server import ThreadingHTTPServer

        self.down, self._gone_after = False, None
        if self._server is not None:  # gone by go_after: it is back
            return
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self.port = server.server_address[1]
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self._server = server

    def stop(self) -> None:
        """The server is gone: connections open now are dropped, new ones refused."""
        self.down = True
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def go_after(self, prefix: str, n: int) -> None:
        """The server goes away once `n` more requests for paths under `prefix` went through."""
        self._gone_after = (prefix, n)

    def _gone(self, path: str) -> bool:
        if self._gone_after is not None and path.startswith(self._gone_after[0]):
            prefix, n = self._gone_after
            self.down = n <= 0
            self._gone_after = (prefix, n - 1)
        return self.down

    def _fail(self) -> bool:
        self.requests += 1
        if self.mode == "slowdown":
            return True
        if self.mode.startswith("every:"):
            return self.requests % int(self.mode.split(":")[1]) == 0
        return False

    def _handler(self):  # noqa: ANN202 - an http.server handler class
        import http.client
        from http.server import BaseHTTPRequestHandler

        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                if proxy._gone(self.path):  # a connection to a server that is gone: dropped
                    self.close_connection = True
                    return
                proxy.requests_seen.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy._fail():
                    proxy.answered_503 += 1
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(SLOW_DOWN)
                    return
                upstream = http.client.HTTPConnection(proxy.host, proxy.port_up, timeout=60)
                upstream.request(self.command, self.path, body=body, headers=dict(self.headers))
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                self.send_response(answer.status)
                skip = ("transfer-encoding", "connection", "content-length")
                for key, value in answer.getheaders():
                    if key.lower() not in skip:
                        self.send_header(key, value)
                # a HEAD's answer has no body but tells the object's size
                length = answer.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler
