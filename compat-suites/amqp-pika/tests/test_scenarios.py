"""AMQP 0-9-1 scenarios with pika: what a RabbitMQ application expects of its broker.

Each test is one scenario id (test_<id>), independent of the others: its own names, its own
connection. Each asserts what a real RabbitMQ does (CI runs them there first); the gateway is held
to the same expectations.
"""
import datetime
import decimal
import time

import pika
import pytest
from pika.exceptions import (ChannelClosedByBroker, ConnectionClosedByBroker, NackError,
                             NoFreeChannels, ProbableAuthenticationError, UnroutableError)

from conftest import params


def closed_with(code, call, *args, **kwargs):
    """Runs a call that must close the channel with `code`."""
    with pytest.raises(ChannelClosedByBroker) as err:
        call(*args, **kwargs)
    assert err.value.reply_code == code, err.value.reply_text


def get_all(ch, queue, limit=1000, auto_ack=True):
    bodies = []
    for _ in range(limit):
        method, _props, body = ch.basic_get(queue, auto_ack=auto_ack)
        if method is None:
            break
        bodies.append(body)
    return bodies


def wait_for(ch, queue, count, timeout=5.0):
    """Gets `count` messages, polling until `timeout`."""
    got = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            ch.connection.sleep(0.1)
            continue
        got.append((method, props, body))
    return got


def confirmed(ch):
    ch.confirm_delivery()
    return ch


def wait_until_gone(conn, queue, timeout=10.0):
    """Waits until `queue` no longer exists, then checks that a passive declare gets 404.
    Probes with mandatory publishes to the default exchange (a publish does not count as use
    for x-expires, a passive declare would) and returns the seconds it took."""
    probe = confirmed(conn.channel())
    start = time.time()
    while time.time() - start < timeout:
        try:
            probe.basic_publish("", queue, b"probe", mandatory=True)
        except UnroutableError:
            break
        conn.sleep(0.1)
    took = time.time() - start
    closed_with(404, conn.channel().queue_declare, queue, passive=True)
    probe.close()
    return took


# ---- connection -----------------------------------------------------------------------------

def test_connect_and_close(conn):
    """The server properties advertise the capabilities RabbitMQ clients look for."""
    caps = conn._impl.server_capabilities
    for cap in ["publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                "consumer_cancel_notify", "connection.blocked", "authentication_failure_close",
                "per_consumer_qos"]:
        assert caps.get(cap) is True, cap
    ch = conn.channel()
    assert ch.is_open
    ch.close()
    conn.close()
    assert conn.is_closed


def test_wrong_password_refused():
    """A wrong password is refused with connection.close 403 ACCESS_REFUSED (the server has
    authentication_failure_close), which pika reports as its authentication error."""
    p = params(credentials=pika.PlainCredentials("guest", "not-the-password"))
    with pytest.raises(ProbableAuthenticationError) as err:
        pika.BlockingConnection(p)
    # pika wraps the broker's close: "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - ...'"
    # (a socket dropped without a close would carry no code).
    assert "(403)" in str(err.value) and "ACCESS_REFUSED" in str(err.value), str(err.value)


def test_heartbeat_negotiated(connect):
    """A requested heartbeat of 1 s is negotiated; idle for 4 s, the connection stays open."""
    c = connect(heartbeat=1)
    assert c._impl.params.heartbeat == 1  # the value after connection.tune
    ch = c.channel()
    c.sleep(4)  # idle for four intervals; pika sends heartbeats while it sleeps
    assert c.is_open
    ch.exchange_declare("amq.direct", passive=True)


def test_frame_max_respected(conn, ch, name):
    """A body larger than frame_max is split into body frames and round-trips intact."""
    frame_max = conn._impl.params.frame_max
    assert 4096 <= frame_max <= 131072
    q = ch.queue_declare(name("big"), exclusive=True).method.queue
    confirmed(ch)
    body = bytes(range(256)) * 1200  # 300 KiB: at least three body frames
    assert len(body) > 2 * frame_max
    ch.basic_publish("", q, body)
    method, _, got = ch.basic_get(q, auto_ack=True)
    assert got == body


def test_channel_max_enforced(connect):
    """channel_max=60 is negotiated; 60 channels open and work; pika refuses a 61st, and a
    61st opened anyway (explicit channel number) makes RabbitMQ close the connection with
    530 NOT_ALLOWED."""
    conn = connect(channel_max=60)
    assert conn._impl.params.channel_max == 60  # the value after connection.tune
    channels = [conn.channel() for _ in range(60)]
    for c in channels:
        c.exchange_declare("amq.fanout", passive=True)
    with pytest.raises(NoFreeChannels):
        conn.channel()
    with pytest.raises(ConnectionClosedByBroker) as err:
        conn.channel(channel_number=61)
    assert err.value.reply_code == 530, err.value.reply_text
    assert conn.is_closed


def test_channel_close_on_error(conn, name):
    """A channel error (404 on a passive declare) closes that channel only."""
    already_open = conn.channel()
    broken = conn.channel()
    closed_with(404, broken.queue_declare, name("missing"), passive=True)
    assert not broken.is_open
    already_open.exchange_declare("amq.direct", passive=True)
    other = conn.channel()
    other.exchange_declare("amq.direct", passive=True)
    assert conn.is_open


# ---- exchanges ------------------------------------------------------------------------------

def route_test(ch, name, kind, bindings, publishes, arguments=None):
    """Declares an exchange and one queue per binding; returns what each queue got."""
    x = name(kind)
    ch.exchange_declare(x, kind)
    confirmed(ch)
    queues = []
    for key, args in bindings:
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, x, routing_key=key, arguments=args)
        queues.append(q)
    for key, headers, body in publishes:
        ch.basic_publish(x, key, body, pika.BasicProperties(headers=headers))
    got = [sorted(get_all(ch, q)) for q in queues]
    ch.exchange_delete(x)
    return got


def test_exchange_direct_routing(ch, name):
    got = route_test(ch, name, "direct", [("a", None), ("b", None)],
                     [("a", None, b"1"), ("b", None, b"2"), ("c", None, b"3")])
    assert got == [[b"1"], [b"2"]]


def test_exchange_fanout_routing(ch, name):
    got = route_test(ch, name, "fanout", [("", None), ("ignored", None)],
                     [("x", None, b"1"), ("", None, b"2")])
    assert got == [[b"1", b"2"], [b"1", b"2"]]


def test_exchange_topic_routing(ch, name):
    got = route_test(ch, name, "topic",
                     [("a.*", None), ("a.#", None), ("#", None), ("a.#.z", None), ("*.b.*", None)],
                     [("a.b", None, b"ab"), ("a", None, b"a"), ("a.b.c.z", None, b"abcz"),
                      ("x.b.y", None, b"xby"), ("a.z", None, b"az")])
    assert got == [
        [b"ab", b"az"],
        [b"a", b"ab", b"abcz", b"az"],
        [b"a", b"ab", b"abcz", b"az", b"xby"],
        [b"abcz", b"az"],
        [b"xby"],
    ]
    # One queue with overlapping bindings gets each message once, in publish order.
    x = name("topic")
    ch.exchange_declare(x, "topic")
    q = ch.queue_declare("", exclusive=True).method.queue
    for key in ("a.*", "*.b", "#"):
        ch.queue_bind(q, x, routing_key=key)
    for key in ("a.b", "x.y", "a.c", "z.b"):
        ch.basic_publish(x, key, key.encode())
    assert get_all(ch, q) == [b"a.b", b"x.y", b"a.c", b"z.b"]
    ch.exchange_delete(x)


def test_exchange_headers_all(ch, name):
    got = route_test(ch, name, "headers", [("", {"x-match": "all", "a": "1", "b": "2"})],
                     [("", {"a": "1", "b": "2"}, b"both"), ("", {"a": "1"}, b"one"),
                      ("", {"a": "1", "b": "2", "c": "3"}, b"more")])
    assert got == [[b"both", b"more"]]


def test_exchange_headers_any(ch, name):
    got = route_test(ch, name, "headers", [("", {"x-match": "any", "a": "1", "b": "2"})],
                     [("", {"a": "1"}, b"a"), ("", {"b": "2"}, b"b"), ("", {"c": "3"}, b"c"),
                      ("", {"a": "9"}, b"wrong")])
    assert got == [[b"a", b"b"]]


def test_default_exchange_routing(ch, name):
    q = ch.queue_declare(name("q")).method.queue
    confirmed(ch)
    ch.basic_publish("", q, b"hello")
    assert get_all(ch, q) == [b"hello"]
    ch.queue_delete(q)


def test_amq_builtin_exchanges(conn, name):
    """The amq.* exchanges exist (passive declares succeed). RabbitMQ accepts a redeclare of
    one with its own attributes (durable, same type), refuses a different type with 406, and
    refuses any new name starting with amq. with 403 ACCESS_REFUSED."""
    ch = conn.channel()
    for x in ["amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"]:
        ch.exchange_declare(x, passive=True)
    for x, kind in [("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic"),
                    ("amq.headers", "headers"), ("amq.match", "headers")]:
        ch.exchange_declare(x, kind, durable=True)
    closed_with(406, ch.exchange_declare, "amq.direct", "fanout", durable=True)
    closed_with(403, conn.channel().exchange_declare, "amq." + name("custom"), "direct")


def test_exchange_passive_declare(conn, name):
    ch = conn.channel()
    closed_with(404, ch.exchange_declare, name("nope"), passive=True)


def test_exchange_redeclare_mismatch(conn, name):
    ch = conn.channel()
    x = name("x")
    ch.exchange_declare(x, "direct")
    ch.exchange_declare(x, "direct")  # the same again is fine
    closed_with(406, ch.exchange_declare, x, "fanout")
    conn.channel().exchange_delete(x)


def test_exchange_delete_if_unused(conn, name):
    ch = conn.channel()
    x = name("x")
    ch.exchange_declare(x, "direct")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, "k")
    closed_with(406, ch.exchange_delete, x, if_unused=True)
    ch = conn.channel()
    ch.queue_unbind(q, x, "k")
    ch.exchange_delete(x, if_unused=True)
    closed_with(404, ch.exchange_declare, x, passive=True)


def test_exchange_auto_delete(conn, name):
    ch = conn.channel()
    x = name("x")
    ch.exchange_declare(x, "direct", auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, "k")
    ch.queue_bind(q, x, "k2")
    ch.queue_unbind(q, x, "k")
    ch.exchange_declare(x, passive=True)  # one binding left: still there
    ch.queue_unbind(q, x, "k2")
    closed_with(404, ch.exchange_declare, x, passive=True)


def test_exchange_internal(conn, name):
    ch = confirmed(conn.channel())
    outer, inner = name("outer"), name("inner")
    ch.exchange_declare(inner, "fanout", internal=True)
    ch.exchange_declare(outer, "fanout")
    ch.exchange_bind(inner, outer)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, inner)
    ch.basic_publish(outer, "", b"via-outer")
    assert get_all(ch, q) == [b"via-outer"]
    closed_with(403, ch.basic_publish, inner, "", b"direct")
    ch = conn.channel()
    ch.exchange_delete(outer)
    ch.exchange_delete(inner)


def test_exchange_to_exchange_binding(conn, name):
    ch = confirmed(conn.channel())
    src, dst = name("src"), name("dst")
    ch.exchange_declare(src, "topic")
    ch.exchange_declare(dst, "direct")
    ch.exchange_bind(dst, src, "a.*")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, dst, "a.x")
    ch.basic_publish(src, "a.x", b"yes")
    ch.basic_publish(src, "a.y", b"no: dst key")
    ch.basic_publish(src, "b.x", b"no: src pattern")
    assert get_all(ch, q) == [b"yes"]
    ch.exchange_unbind(dst, src, "a.*")
    ch.basic_publish(src, "a.x", b"after unbind")
    assert get_all(ch, q) == []
    ch.exchange_delete(src)
    ch.exchange_delete(dst)


def test_alternate_exchange(conn, name):
    ch = confirmed(conn.channel())
    main, ae = name("main"), name("ae")
    ch.exchange_declare(ae, "fanout")
    ch.exchange_declare(main, "direct", arguments={"alternate-exchange": ae})
    routed = ch.queue_declare("", exclusive=True).method.queue
    spare = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(routed, main, "known")
    ch.queue_bind(spare, ae)
    ch.basic_publish(main, "known", b"routed")
    ch.basic_publish(main, "unknown", b"alternate")
    assert get_all(ch, routed) == [b"routed"]
    assert get_all(ch, spare) == [b"alternate"]
    ch.exchange_delete(main)
    ch.exchange_delete(ae)


# ---- queues ---------------------------------------------------------------------------------

def test_queue_server_named(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    assert q.startswith("amq.gen-")


def test_queue_passive_declare(conn, name):
    ch = conn.channel()
    closed_with(404, ch.queue_declare, name("missing"), passive=True)
    ch = confirmed(conn.channel())
    q = ch.queue_declare(name("q"), exclusive=True).method.queue
    ch.basic_publish("", q, b"1")
    ok = ch.queue_declare(q, passive=True).method
    assert (ok.message_count, ok.consumer_count) == (1, 0)


def test_queue_message_count(ch, name):
    confirmed(ch)
    q = ch.queue_declare(name("q"), exclusive=True).method.queue
    for i in range(5):
        ch.basic_publish("", q, b"m%d" % i)
    assert ch.queue_declare(q, passive=True).method.message_count == 5
    ch.basic_consume(q, lambda *a: None)
    assert ch.queue_declare(q, passive=True).method.consumer_count == 1


def test_queue_exclusive(connect, name):
    """Another connection gets 405 RESOURCE_LOCKED; the queue goes when its owner closes."""
    owner = connect()
    q = owner.channel().queue_declare(name("excl"), exclusive=True).method.queue
    other = connect()
    closed_with(405, other.channel().queue_declare, q, passive=True)
    closed_with(405, other.channel().basic_consume, q, lambda *a: None)
    owner.close()
    wait_until_gone(other, q)


def test_queue_auto_delete(conn, name):
    ch = conn.channel()
    q = ch.queue_declare(name("auto"), auto_delete=True).method.queue
    first = ch.basic_consume(q, lambda *a: None)
    second = ch.basic_consume(q, lambda *a: None)
    ch.basic_cancel(first)
    assert ch.queue_declare(q, passive=True).method.consumer_count == 1  # still there
    ch.basic_cancel(second)
    wait_until_gone(conn, q)


def test_queue_durable_redeclare_mismatch(conn, name):
    ch = conn.channel()
    q = ch.queue_declare(name("q"), durable=True).method.queue
    closed_with(406, ch.queue_declare, q, durable=False)
    conn.channel().queue_delete(q)


def test_queue_purge(ch, name):
    confirmed(ch)
    q = ch.queue_declare(name("q"), exclusive=True).method.queue
    for i in range(4):
        ch.basic_publish("", q, b"%d" % i)
    assert ch.queue_purge(q).method.message_count == 4
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    assert get_all(ch, q) == []


def test_queue_delete_if_unused(conn, name):
    ch = conn.channel()
    q = ch.queue_declare(name("q")).method.queue
    ch.basic_consume(q, lambda *a: None)
    closed_with(406, conn.channel().queue_delete, q, if_unused=True)
    conn.channel().queue_delete(q)


def test_queue_delete_if_empty(conn, name):
    ch = confirmed(conn.channel())
    q = ch.queue_declare(name("q")).method.queue
    ch.basic_publish("", q, b"x")
    closed_with(406, ch.queue_delete, q, if_empty=True)
    conn.channel().queue_delete(q)


def test_queue_delete_returns_count(ch, name):
    confirmed(ch)
    q = ch.queue_declare(name("q")).method.queue
    for i in range(3):
        ch.basic_publish("", q, b"%d" % i)
    assert ch.queue_delete(q).method.message_count == 3


def test_queue_message_ttl(ch, name):
    """x-message-ttl: a message read in time is delivered; one left past the TTL is not."""
    confirmed(ch)
    q = ch.queue_declare(name("ttl"), exclusive=True, arguments={"x-message-ttl": 1000}).method.queue
    ch.basic_publish("", q, b"read in time")
    assert get_all(ch, q) == [b"read in time"]
    ch.basic_publish("", q, b"left too long")
    time.sleep(1.5)
    assert get_all(ch, q) == []
    assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_queue_expires(conn, name):
    """x-expires=1000: a queue nobody uses is deleted about a second after its last use."""
    ch = conn.channel()
    q = ch.queue_declare(name("exp"), arguments={"x-expires": 1000}).method.queue
    took = wait_until_gone(conn, q)
    assert 0.8 <= took < 10, took


def test_queue_max_length_drop_head(ch, name):
    confirmed(ch)
    q = ch.queue_declare(name("ml"), exclusive=True, arguments={"x-max-length": 3}).method.queue
    for i in range(5):
        ch.basic_publish("", q, b"m%d" % i)
    assert get_all(ch, q) == [b"m2", b"m3", b"m4"]


def test_queue_max_length_reject_publish(ch, name):
    confirmed(ch)
    q = ch.queue_declare(name("rp"), exclusive=True,
                         arguments={"x-max-length": 2, "x-overflow": "reject-publish"}).method.queue
    ch.basic_publish("", q, b"1")
    ch.basic_publish("", q, b"2")
    with pytest.raises(NackError):
        ch.basic_publish("", q, b"3")
    assert get_all(ch, q) == [b"1", b"2"]


def dead_letter_setup(ch, name, arguments):
    dlx = name("dlx")
    ch.exchange_declare(dlx, "fanout")
    dlq = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(dlq, dlx)
    args = {"x-dead-letter-exchange": dlx, **arguments}
    q = ch.queue_declare(name("src"), exclusive=True, arguments=args).method.queue
    return q, dlq, dlx


def test_queue_dead_letter_exchange(ch, name):
    confirmed(ch)
    q, dlq, dlx = dead_letter_setup(ch, name, {})
    ch.basic_publish("", q, b"rejected-one")
    method, _, _ = ch.basic_get(q)
    ch.basic_reject(method.delivery_tag, requeue=False)
    [(method, props, body)] = wait_for(ch, dlq, 1)
    assert body == b"rejected-one"
    assert method.exchange == dlx  # delivered as coming from the dead-letter exchange
    death = props.headers["x-death"][0]
    assert (death["count"], death["reason"], death["queue"]) == (1, "rejected", q)
    assert death["exchange"] == "" and death["routing-keys"] == [q]
    assert props.headers["x-first-death-reason"] == "rejected"
    # Expiry: a TTL queue nobody reads dead-letters on its own (the delayed-retry pattern).
    q2, dlq2, dlx2 = dead_letter_setup(ch, name, {"x-message-ttl": 300})
    ch.basic_publish("", q2, b"expired-one")
    [(_, props, body)] = wait_for(ch, dlq2, 1, timeout=10)
    assert body == b"expired-one"
    death = props.headers["x-death"][0]
    assert (death["count"], death["reason"], death["queue"]) == (1, "expired", q2)
    ch.exchange_delete(dlx)
    ch.exchange_delete(dlx2)


def test_queue_dead_letter_routing_key(ch, name):
    confirmed(ch)
    dlx = name("dlx")
    ch.exchange_declare(dlx, "direct")
    dlq = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(dlq, dlx, "dead")
    q = ch.queue_declare(name("src"), exclusive=True, arguments={
        "x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "dead"}).method.queue
    ch.basic_publish("", q, b"m")
    method, _, _ = ch.basic_get(q)
    ch.basic_nack(method.delivery_tag, requeue=False)
    [(method, _, body)] = wait_for(ch, dlq, 1)
    assert (body, method.routing_key) == (b"m", "dead")
    ch.exchange_delete(dlx)


def test_queue_unsupported_argument(conn, name):
    for bad in [{"x-max-length": "many"}, {"x-max-length": -1}, {"x-overflow": "sometimes"},
                {"x-message-ttl": -5}]:
        ch = conn.channel()
        closed_with(406, ch.queue_declare, name("bad"), arguments=bad)


# ---- publishing -----------------------------------------------------------------------------

def test_publish_properties_preserved(ch, name):
    """Every basic property and every header type pika can encode arrive as sent, with binary
    and empty bodies. user_id must be the connection's user (RabbitMQ checks it)."""
    confirmed(ch)
    q = ch.queue_declare(name("props"), exclusive=True).method.queue
    headers = {
        "text": "hello", "unicode": "h\u00e9llo \u2713", "int": 42, "negative": -7,
        "big": 2**40, "very-negative": -2**40, "flag": True, "off": False, "void": None,
        "bytes": b"\x00\xff\x10",
        "when": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
        "price": decimal.Decimal("3.14"), "tiny": decimal.Decimal("-0.005"),
        "list": [1, "two", False, b"\x01"],
        "nested": {"a": 1, "b": ["x", 2], "deeper": {"l1": [{"l2": {"l3": [1, [2, 3], {"k": "v"}]}}]}},
    }
    sent = pika.BasicProperties(
        content_type="application/json", content_encoding="gzip", headers=headers,
        delivery_mode=2, priority=5, correlation_id="corr-1", reply_to="replies",
        expiration="60000", message_id="id-1", timestamp=1700000000, type="order.created",
        user_id="guest", app_id="compat")
    for body in [bytes(range(256)) + b"\r\n\x00binary", b""]:
        ch.basic_publish("", q, body, sent)
        method, props, got = ch.basic_get(q, auto_ack=True)
        assert got == body
        for field in ["content_type", "content_encoding", "delivery_mode", "priority",
                      "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
                      "type", "user_id", "app_id"]:
            assert getattr(props, field) == getattr(sent, field), field
        assert props.headers == headers
    # A user_id other than the connection's user is refused (406 PRECONDITION_FAILED).
    closed_with(406, ch.basic_publish, "", q, b"x", pika.BasicProperties(user_id="someone-else"))


def test_mandatory_unroutable_returned(ch, name):
    confirmed(ch)
    x = name("x")
    ch.exchange_declare(x, "direct")
    with pytest.raises(UnroutableError) as err:
        ch.basic_publish(x, "nobody", b"lost?", mandatory=True)
    [returned] = err.value.messages
    assert (returned.method.reply_code, returned.method.reply_text) == (312, "NO_ROUTE")
    assert (returned.method.exchange, returned.method.routing_key) == (x, "nobody")
    assert returned.body == b"lost?"
    ch.exchange_delete(x)


def test_mandatory_routable_not_returned(ch, name):
    confirmed(ch)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"fine", mandatory=True)
    assert get_all(ch, q) == [b"fine"]


def test_per_message_ttl(ch, name):
    confirmed(ch)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"zero", pika.BasicProperties(expiration="0"))  # no consumer: gone
    ch.basic_publish("", q, b"brief", pika.BasicProperties(expiration="100"))
    ch.basic_publish("", q, b"lasting", pika.BasicProperties(expiration="60000"))
    time.sleep(0.6)
    assert get_all(ch, q) == [b"lasting"]


def test_publisher_confirms_single(ch, name):
    confirmed(ch)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"one")  # raises if nacked
    assert ch.queue_declare(q, passive=True).method.message_count == 1


def test_publisher_confirms_multiple(conn, name):
    """Asynchronous publishing of 500 messages: the confirms come in order, each one (alone, or
    with multiple=true, all earlier ones not yet confirmed) covers exactly the next unconfirmed
    sequence numbers, so every number from 1 to 500 is acked exactly once and none is nacked."""
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    impl = ch._impl  # pika's asynchronous channel under the blocking one
    frames, selected = [], []
    impl.confirm_delivery(
        ack_nack_callback=lambda f: frames.append(
            (type(f.method).__name__, f.method.delivery_tag, f.method.multiple)),
        callback=lambda _: selected.append(1))
    deadline = time.time() + 5
    while not selected and time.time() < deadline:
        conn.process_data_events(0.1)
    assert selected, "no confirm.select-ok"
    n = 500
    for i in range(n):
        impl.basic_publish("", q, b"m%d" % i)

    def highest():
        return frames[-1][1] if frames else 0

    deadline = time.time() + 20
    while highest() < n and time.time() < deadline:
        conn.process_data_events(0.1)
    conn.process_data_events(0.3)  # anything after the last one would be a duplicate
    confirmed_upto = 0
    for kind, tag, multiple in frames:
        assert kind == "Ack", (kind, tag)
        if multiple:
            assert tag > confirmed_upto, f"multiple ack {tag} confirms nothing new"
        else:
            assert tag == confirmed_upto + 1, f"ack {tag} after {confirmed_upto}: gap or repeat"
        confirmed_upto = tag
    assert confirmed_upto == n
    assert ch.queue_declare(q, passive=True).method.message_count == n


def test_publisher_confirms_unroutable(ch, name):
    confirmed(ch)
    x = name("x")
    ch.exchange_declare(x, "direct")
    # pika raises NackError on a nack and UnroutableError on a return; an ack returns normally.
    ch.basic_publish(x, "nobody", b"dropped but confirmed")
    ch.exchange_delete(x)


def test_tx_commit_publishes(connect, name):
    c = connect()
    ch = c.channel()
    q = ch.queue_declare(name("tx")).method.queue
    ch.tx_select()
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b")
    observer = connect().channel()
    assert observer.queue_declare(q, passive=True).method.message_count == 0
    ch.tx_commit()
    assert sorted(get_all(observer, q)) == [b"a", b"b"]
    observer.queue_delete(q)


def test_tx_rollback_publishes(ch, name):
    q = ch.queue_declare(name("tx"), exclusive=True).method.queue
    ch.tx_select()
    ch.basic_publish("", q, b"discarded")
    ch.tx_rollback()
    ch.basic_publish("", q, b"kept")
    ch.tx_commit()
    assert get_all(ch, q) == [b"kept"]


def test_tx_acks(connect, name):
    c = connect()
    setup = confirmed(c.channel())
    q = setup.queue_declare(name("txack")).method.queue
    setup.basic_publish("", q, b"first")
    setup.basic_publish("", q, b"second")
    ch = c.channel()
    ch.tx_select()
    m1, _, b1 = ch.basic_get(q)
    m2, _, b2 = ch.basic_get(q)
    ch.basic_ack(m1.delivery_tag)
    ch.tx_commit()          # the first ack takes effect
    ch.basic_ack(m2.delivery_tag)
    ch.tx_rollback()        # the second does not
    ch.close()              # so the second comes back
    again = wait_for(c.channel(), q, 1)
    assert [body for _, _, body in again] == [b2]
    assert again[0][0].redelivered
    c.channel().queue_delete(q)


def test_tx_commit_without_select(conn):
    closed_with(406, conn.channel().tx_commit)


# ---- consuming ------------------------------------------------------------------------------

def consume_n(conn, ch, queue, n, auto_ack, timeout=10):
    got = []
    tag = ch.basic_consume(queue, lambda c, m, p, b: got.append((m, b)), auto_ack=auto_ack)
    deadline = time.time() + timeout
    while len(got) < n and time.time() < deadline:
        conn.process_data_events(0.1)
    return tag, got


def test_consume_auto_ack(conn, ch, name):
    confirmed(ch)
    q = ch.queue_declare("", exclusive=True).method.queue
    for i in range(3):
        ch.basic_publish("", q, b"%d" % i)
    tag, got = consume_n(conn, ch, q, 3, auto_ack=True)
    assert [b for _, b in got] == [b"0", b"1", b"2"]
    ch.basic_cancel(tag)
    assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_consume_manual_ack(conn, ch, name):
    confirmed(ch)
    q = ch.queue_declare(name("q")).method.queue
    for i in range(3):
        ch.basic_publish("", q, b"%d" % i)
    tag, got = consume_n(conn, ch, q, 3, auto_ack=False)
    assert len(got) == 3
    ch.basic_ack(got[0][0].delivery_tag)
    ch.basic_cancel(tag)
    ch.close()
    # The two unacked ones come back, redelivered.
    ch2 = conn.channel()
    again = wait_for(ch2, q, 2)
    assert sorted(b for _, _, b in again) == [b"1", b"2"]
    assert all(m.redelivered for m, _, _ in again)
    ch2.queue_delete(q)


def test_consume_exclusive(connect, name):
    c = connect()
    ch = c.channel()
    q = ch.queue_declare(name("q")).method.queue
    ch.basic_consume(q, lambda *a: None, exclusive=True)
    other = c.channel()
    closed_with(403, other.basic_consume, q, lambda *a: None)
    ch.queue_delete(q)


def test_consume_cancel(conn, ch, name):
    confirmed(ch)
    q = ch.queue_declare("", exclusive=True).method.queue
    tag, got = consume_n(conn, ch, q, 0, auto_ack=True, timeout=0.2)
    ch.basic_cancel(tag)
    ch.basic_publish("", q, b"after cancel")
    conn.process_data_events(0.5)
    assert got == []
    assert get_all(ch, q) == [b"after cancel"]


def test_server_cancel_on_queue_delete(conn, name):
    ch = conn.channel()
    q = ch.queue_declare(name("q")).method.queue
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(q, lambda *a: None)
    conn.channel().queue_delete(q)
    deadline = time.time() + 5
    while not cancelled and time.time() < deadline:
        conn.process_data_events(0.1)
    assert cancelled == [tag]


def test_basic_get(ch, name):
    confirmed(ch)
    q = ch.queue_declare("", exclusive=True).method.queue
    assert ch.basic_get(q)[0] is None
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b")
    method, _, body = ch.basic_get(q)
    assert body == b"a" and method.message_count == 1 and not method.redelivered
    ch.basic_ack(method.delivery_tag)


def test_basic_get_no_ack(ch, name):
    confirmed(ch)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"a")
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"a"
    assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_ack_multiple(conn, ch, name):
    confirmed(ch)
    q = ch.queue_declare(name("q")).method.queue
    for i in range(5):
        ch.basic_publish("", q, b"%d" % i)
    tag, got = consume_n(conn, ch, q, 5, auto_ack=False)
    ch.basic_ack(got[3][0].delivery_tag, multiple=True)  # the first four
    ch.basic_cancel(tag)
    ch.close()
    again = wait_for(conn.channel(), q, 1)
    assert [b for _, _, b in again] == [b"4"]
    conn.channel().queue_delete(q)


def test_nack_multiple_requeue(conn, ch, name):
    confirmed(ch)
    q = ch.queue_declare("", exclusive=True).method.queue
    for i in range(3):
        ch.basic_publish("", q, b"%d" % i)
    tag, got = consume_n(conn, ch, q, 3, auto_ack=False)
    ch.basic_cancel(tag)
    ch.basic_nack(got[2][0].delivery_tag, multiple=True, requeue=True)
    again = wait_for(ch, q, 3)
    assert sorted(b for _, _, b in again) == [b"0", b"1", b"2"]
    assert all(m.redelivered for m, _, _ in again)


def test_reject_requeue_redelivered(ch, name):
    confirmed(ch)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"again")
    method, _, _ = ch.basic_get(q)
    assert not method.redelivered
    ch.basic_reject(method.delivery_tag, requeue=True)
    [(method, _, body)] = wait_for(ch, q, 1)
    assert body == b"again" and method.redelivered


def test_nack_no_requeue_dropped(ch, name):
    confirmed(ch)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"gone")
    method, _, _ = ch.basic_get(q)
    ch.basic_nack(method.delivery_tag, requeue=False)
    time.sleep(0.3)
    assert get_all(ch, q) == []


def test_reject_no_requeue_dead_lettered(ch, name):
    confirmed(ch)
    q, dlq, dlx = dead_letter_setup(ch, name, {})
    ch.basic_publish("", q, b"to-dlx")
    method, _, _ = ch.basic_get(q)
    ch.basic_reject(method.delivery_tag, requeue=False)
    [(_, props, body)] = wait_for(ch, dlq, 1)
    assert body == b"to-dlx" and props.headers["x-death"][0]["reason"] == "rejected"
    assert get_all(ch, q) == []
    ch.exchange_delete(dlx)


def test_unknown_delivery_tag_ack(conn):
    ch = conn.channel()
    ch.basic_ack(12345)
    # The error comes back asynchronously; the next synchronous call sees the channel closed.
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.exchange_declare("amq.direct", passive=True)
    assert err.value.reply_code == 406


def test_basic_recover_requeue(conn, ch, name):
    confirmed(ch)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"r")
    method, _, _ = ch.basic_get(q)
    ch.basic_recover(requeue=True)
    [(method, _, body)] = wait_for(ch, q, 1)
    assert body == b"r" and method.redelivered


def test_qos_prefetch_per_consumer(conn, ch, name):
    confirmed(ch)
    q = ch.queue_declare("", exclusive=True).method.queue
    for i in range(10):
        ch.basic_publish("", q, b"%d" % i)
    ch.basic_qos(prefetch_count=2)
    tag, got = consume_n(conn, ch, q, 10, auto_ack=False, timeout=1.5)
    assert len(got) == 2  # no acks, so no more than the prefetch
    ch.basic_ack(got[1][0].delivery_tag, multiple=True)
    deadline = time.time() + 5
    while len(got) < 4 and time.time() < deadline:
        conn.process_data_events(0.1)
    conn.process_data_events(0.5)
    assert len(got) == 4


def test_qos_prefetch_global(conn, ch, name):
    """RabbitMQ: global=true limits all consumers of the channel together."""
    confirmed(ch)
    q1 = ch.queue_declare("", exclusive=True).method.queue
    q2 = ch.queue_declare("", exclusive=True).method.queue
    for i in range(5):
        ch.basic_publish("", q1, b"a%d" % i)
        ch.basic_publish("", q2, b"b%d" % i)
    ch.basic_qos(prefetch_count=3, global_qos=True)
    got = []
    ch.basic_consume(q1, lambda c, m, p, b: got.append(b))
    ch.basic_consume(q2, lambda c, m, p, b: got.append(b))
    deadline = time.time() + 1.5
    while time.time() < deadline:
        conn.process_data_events(0.1)
    assert len(got) == 3


# ---- errors ---------------------------------------------------------------------------------

def test_publish_to_missing_exchange(conn, name):
    ch = confirmed(conn.channel())
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.basic_publish(name("nowhere"), "k", b"x")
    assert err.value.reply_code == 404


def test_consume_missing_queue(conn, name):
    closed_with(404, conn.channel().basic_consume, name("nope"), lambda *a: None)


def test_bind_missing_queue(conn, name):
    closed_with(404, conn.channel().queue_bind, name("nope"), "amq.direct", "k")
