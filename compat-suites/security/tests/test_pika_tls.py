"""pika over amqps with PLAIN, its password a Pulsar token, against the gateway's AMQP TLS
listener. Settings come from the environment `run` sets: AMQPS_PORT, CA_FILE, TOKEN,
EXPIRED_TOKEN, AMQP_PLAIN_PORT (the plaintext listener, for comparison)."""
import os
import socket
import ssl
import time
import uuid

import pika
import pytest
from pika.exceptions import AMQPConnectionError, ProbableAuthenticationError

PORT = int(os.environ["AMQPS_PORT"])
CA = os.environ["CA_FILE"]
TOKEN = os.environ["TOKEN"]
EXPIRED = os.environ["EXPIRED_TOKEN"]

pytestmark = pytest.mark.timeout(60)


def params(password, context):
    return pika.ConnectionParameters(
        host="localhost", port=PORT, virtual_host="/",
        credentials=pika.PlainCredentials("app", password),
        ssl_options=pika.SSLOptions(context, "localhost") if context else None,
        connection_attempts=1, socket_timeout=10, blocked_connection_timeout=10)


def trusting():
    return ssl.create_default_context(cafile=CA)


def test_publish_confirm_and_get_over_tls():
    conn = pika.BlockingConnection(params(TOKEN, trusting()))
    ch = conn.channel()
    ch.confirm_delivery()
    q = ch.queue_declare(f"tls-{uuid.uuid4().hex[:8]}", exclusive=True).method.queue
    for i in range(5):
        ch.basic_publish("", q, f"m{i}".encode(), mandatory=True)  # raises unless confirmed
    got = []
    for _ in range(5):
        method, _props, body = ch.basic_get(q, auto_ack=True)
        assert method is not None
        got.append(body)
    assert got == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    conn.close()


def test_a_client_that_does_not_trust_the_certificate_fails():
    # The system's roots only: the test CA is not among them. pika re-raises the ssl module's
    # verification error itself.
    with pytest.raises(ssl.SSLCertVerificationError) as err:
        pika.BlockingConnection(params(TOKEN, ssl.create_default_context()))
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)


def test_an_expired_token_is_refused_with_access_refused():
    with pytest.raises(ProbableAuthenticationError) as err:
        pika.BlockingConnection(params(EXPIRED, trusting()))
    assert "(403)" in str(err.value) and "ACCESS_REFUSED" in str(err.value), str(err.value)


def test_a_plaintext_client_on_the_tls_port_is_closed_promptly():
    started = time.time()
    with pytest.raises(AMQPConnectionError):
        pika.BlockingConnection(params(TOKEN, None))
    assert time.time() - started < 8, "closed, not left hanging"
    # And at the socket level: the AMQP header gets the connection closed at once.
    with socket.create_connection(("127.0.0.1", PORT), timeout=8) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        data = b""
        while True:
            chunk = s.recv(256)  # a TLS alert may come first; then the close
            if not chunk:
                break
            data += chunk
