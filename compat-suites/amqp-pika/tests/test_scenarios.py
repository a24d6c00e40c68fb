"""AMQP 0-9-1 scenarios with pika: what a RabbitMQ application expects of its broker.

Each test is one scenario id (test_<id>), independent of the others: its own names, its own
connection. They pass against a real RabbitMQ (CI runs them there first) and against the gateway.
"""
import threading
import time

import pika
import pytest
from pika.exceptions import (ChannelClosedByBroker, ConnectionClosedByBroker, NackError,
                             ProbableAuthenticationError, UnroutableError)

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


# ---- connection -----------------------------------------------------------------------------

def test_connect_and_close(conn):
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
    p = params(credentials=pika.PlainCredentials("guest", "not-the-password"))
    with pytest.raises((ProbableAuthenticationError, ConnectionClosedByBroker,
                        pika.exceptions.AuthenticationError)) as err:
        pika.BlockingConnection(p)
    if isinstance(err.value, ConnectionClosedByBroker):
        assert err.value.reply_code == 403


def test_heartbeat_negotiated(connect):
    c = connect(heartbeat=1)
    ch = c.channel()
    c.sleep(4)  # idle for four intervals: heartbeats keep it open
    assert c.is_open
    ch.exchange_declare("amq.direct", passive=True)


def test_frame_max_respected(ch, name):
    q = ch.queue_declare(name("big"), exclusive=True).method.queue
    confirmed(ch)
    body = bytes(range(256)) * 1200  # 300 KiB, more than the 128 KiB frame_max
    ch.basic_publish("", q, body)
    method, _, got = ch.basic_get(q, auto_ack=True)
    assert got == body


def test_channel_max_enforced(conn):
    channels = [conn.channel() for _ in range(50)]
    for c in channels:
        c.exchange_declare("amq.fanout", passive=True)
    assert conn._impl.params.channel_max >= 50


def test_channel_close_on_error(conn, name):
    broken = conn.channel()
    closed_with(404, broken.queue_declare, name("missing"), passive=True)
    assert not broken.is_open
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


def test_amq_builtin_exchanges(conn):
    ch = conn.channel()
    for x in ["amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"]:
        ch.exchange_declare(x, passive=True)
    closed_with(403, ch.exchange_declare, "amq.custom", "direct")


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
    ch.queue_unbind(q, x, "k")
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
    owner = connect()
    q = owner.channel().queue_declare(name("excl"), exclusive=True).method.queue
    other = connect().channel()
    closed_with(405, other.queue_declare, q, passive=True)
    owner.close()
    time.sleep(0.5)
    closed_with(404, connect().channel().queue_declare, q, passive=True)


def test_queue_auto_delete(conn, name):
    ch = conn.channel()
    q = ch.queue_declare(name("auto"), auto_delete=True).method.queue
    tag = ch.basic_consume(q, lambda *a: None)
    ch.basic_cancel(tag)
    time.sleep(0.5)
    closed_with(404, conn.channel().queue_declare, q, passive=True)


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
    confirmed(ch)
    q = ch.queue_declare(name("ttl"), exclusive=True, arguments={"x-message-ttl": 200}).method.queue
    ch.basic_publish("", q, b"short-lived")
    time.sleep(0.8)
    assert get_all(ch, q) == []


def test_queue_expires(conn, name):
    ch = conn.channel()
    q = ch.queue_declare(name("exp"), arguments={"x-expires": 1000}).method.queue
    time.sleep(3.5)
    closed_with(404, conn.channel().queue_declare, q, passive=True)


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
    [(_, props, body)] = wait_for(ch, dlq, 1)
    assert body == b"rejected-one"
    death = props.headers["x-death"][0]
    assert (death["count"], death["reason"], death["queue"]) == (1, "rejected", q)
    assert death["exchange"] == "" and death["routing-keys"] == [q]
    assert props.headers["x-first-death-reason"] == "rejected"
    # Expiry: a TTL queue nobody reads dead-letters on its own (the delayed-retry pattern).
    q2, dlq2, _ = dead_letter_setup(ch, name, {"x-message-ttl": 300})
    ch.basic_publish("", q2, b"expired-one")
    [(_, props, body)] = wait_for(ch, dlq2, 1, timeout=10)
    assert body == b"expired-one"
    assert props.headers["x-death"][0]["reason"] == "expired"
    ch.exchange_delete(dlx)


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
    confirmed(ch)
    q = ch.queue_declare(name("props"), exclusive=True).method.queue
    headers = {"text": "hello", "int": 42, "negative": -7, "big": 2**40, "flag": True,
               "nested": {"a": 1, "b": ["x", 2]}, "list": [1, "two", False], "bytes": b"\x00\xff"}
    sent = pika.BasicProperties(
        content_type="application/json", content_encoding="gzip", headers=headers,
        delivery_mode=2, priority=5, correlation_id="corr-1", reply_to="replies",
        expiration="60000", message_id="id-1", timestamp=1700000000, type="order.created",
        user_id="guest", app_id="compat")
    for body in [b"\x00\x01\x02binary", b""]:
        ch.basic_publish("", q, body, sent)
        method, props, got = ch.basic_get(q, auto_ack=True)
        assert got == body
        for field in ["content_type", "content_encoding", "delivery_mode", "priority",
                      "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
                      "type", "user_id", "app_id"]:
            assert getattr(props, field) == getattr(sent, field), field
        assert props.headers["text"] in ("hello", b"hello")
        assert props.headers["int"] == 42 and props.headers["negative"] == -7
        assert props.headers["big"] == 2**40 and props.headers["flag"] is True
        assert props.headers["nested"]["a"] == 1
        assert [v.decode() if isinstance(v, bytes) else v for v in props.headers["nested"]["b"]] == ["x", 2]
        assert props.headers["bytes"] == b"\x00\xff"


def test_mandatory_unroutable_returned(ch, name):
    confirmed(ch)
    x = name("x")
    ch.exchange_declare(x, "direct")
    with pytest.raises(UnroutableError) as err:
        ch.basic_publish(x, "nobody", b"lost?", mandatory=True)
    returned = err.value.messages[0]
    assert returned.method.reply_code == 312 and returned.body == b"lost?"
    ch.exchange_delete(x)


def test_mandatory_routable_not_returned(ch, name):
    confirmed(ch)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"fine", mandatory=True)
    assert get_all(ch, q) == [b"fine"]


def test_per_message_ttl(ch, name):
    confirmed(ch)
    q = ch.queue_declare("", exclusive=True).method.queue
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
    """Asynchronous publishing: every sequence number is confirmed, as an ack, exactly once
    (a confirm with multiple=true covers every earlier one not yet confirmed)."""
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    impl = ch._impl  # pika's asynchronous channel under the blocking one
    acked, nacked, selected = set(), set(), []

    def on_confirm(frame):
        tag, multiple = frame.method.delivery_tag, frame.method.multiple
        target = acked if isinstance(frame.method, pika.spec.Basic.Ack) else nacked
        covered = range(1, tag + 1) if multiple else [tag]
        fresh = [t for t in covered if t not in acked and t not in nacked]
        assert multiple or fresh, f"{tag} confirmed twice"
        target.update(fresh)

    impl.confirm_delivery(ack_nack_callback=on_confirm, callback=lambda _: selected.append(1))
    while not selected:
        conn.process_data_events(0.1)
    n = 500
    for i in range(n):
        impl.basic_publish("", q, b"m%d" % i)
    deadline = time.time() + 20
    while len(acked) + len(nacked) < n and time.time() < deadline:
        conn.process_data_events(0.1)
    assert nacked == set()
    assert acked == set(range(1, n + 1))
    assert ch.queue_declare(q, passive=True).method.message_count == n


def test_publisher_confirms_unroutable(ch, name):
    confirmed(ch)
    x = name("x")
    ch.exchange_declare(x, "direct")
    ch.basic_publish(x, "nobody", b"dropped but confirmed")  # an ack, not a nack
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
