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

    def bucket(self, name: str | None = None) -> str:
        """A new, empty bucket; its name."""
        import boto3

        name = name or f"linkedout-{uuid.uuid4().hex[:12]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=name)
        return name

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
