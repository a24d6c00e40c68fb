"""AMQP 1.0 scenarios with python-qpid-proton (blocking API): what a plain AMQP 1.0 application,
not a JMS one, expects of a broker. Each test is one scenario id (test_<id>) with its own names and
connections. Queues and topics are addressed by name, with the "queue" / "topic" capability on
the link as the AMQP JMS mapping has it. They pass against ActiveMQ Artemis first.
"""
import uuid

import pytest
from proton import ConnectionException, Message, Timeout, symbol, ulong
from proton.reactor import DurableSubscription, Selector
from proton.utils import SendException

from conftest import QUEUE, TOPIC, open_connection

QUIET = 1.5  # seconds to wait for a message that must not come
WAIT = 10


def receive_all(receiver, timeout=QUIET):
    """Receives and accepts until nothing arrives for `timeout` seconds; returns the bodies."""
    bodies = []
    while True:
        try:
            msg = receiver.receive(timeout=timeout)
        except Timeout:
            return bodies
        receiver.accept()
        bodies.append(msg.body)


def test_send_receive_queue(connect, name):
    """Messages sent to a queue arrive once, in order; accepted ones are gone."""
    conn = connect()
    q = name("queue")
    sender = conn.create_sender(q, options=QUEUE)
    for i in range(5):
        sender.send(Message(body=f"m{i}", durable=True))
    receiver = conn.create_receiver(q, credit=10, options=QUEUE)
    assert receive_all(receiver) == [f"m{i}" for i in range(5)]
    receiver.close()
    again = connect().create_receiver(q, credit=10, options=QUEUE)
    assert receive_all(again) == []


def test_message_sections(connect, name):
    """Properties, application properties of each type, and map and binary bodies arrive unchanged."""
    conn = connect()
    q = name("sections")
    sender = conn.create_sender(q, options=QUEUE)
    props = {"s": "välue", "i": 42, "big": ulong(2**63 + 5), "f": 1.25, "b": True, "neg": -7}
    sender.send(Message(body={"k": "v", "n": 1, "nested": {"x": [1, 2]}}, id="msg-1",
                        correlation_id="corr-1", subject="subj", content_type="application/x-test",
                        reply_to="somewhere", properties=props))
    sender.send(Message(body=b"\x00\x01\xfe\xff", content_type="application/octet-stream"))
    receiver = conn.create_receiver(q, credit=10, options=QUEUE)
    m = receiver.receive(timeout=WAIT)
    receiver.accept()
    assert m.body == {"k": "v", "n": 1, "nested": {"x": [1, 2]}}
    assert (m.id, m.correlation_id, m.subject, m.content_type, m.reply_to) == (
        "msg-1", "corr-1", "subj", "application/x-test", "somewhere")
    assert m.properties == props
    assert type(m.properties["big"]) is ulong and type(m.properties["f"]) is float
    m2 = receiver.receive(timeout=WAIT)
    receiver.accept()
    assert m2.body == b"\x00\x01\xfe\xff" and m2.content_type == "application/octet-stream"


def test_release_redelivers(connect, name):
    """A delivery settled as modified with delivery-failed comes back with delivery_count 1; one
    released (not a failed attempt) comes back with the count unchanged."""
    conn = connect()
    q = name("release")
    conn.create_sender(q, options=QUEUE).send(Message(body="again"))
    receiver = conn.create_receiver(q, credit=1, options=QUEUE)
    first = receiver.receive(timeout=WAIT)
    assert first.delivery_count == 0
    # proton's release(delivered=True) sends modified without delivery-failed, which does not count
    # as a delivery attempt; a failed delivery is modified with delivery-failed set
    receiver.fetcher.unsettled[0].local.failed = True
    receiver.release(delivered=True)
    second = receiver.receive(timeout=WAIT)
    assert second.body == "again" and second.delivery_count == 1
    receiver.release(delivered=False)
    third = receiver.receive(timeout=WAIT)
    receiver.accept()
    assert third.body == "again" and third.delivery_count == 1


def test_unsettled_redelivered_after_close(connect, name):
    """A message received but not accepted returns when its connection closes."""
    q = name("unsettled")
    first = connect()
    first.create_sender(q, options=QUEUE).send(Message(body="kept"))
    assert first.create_receiver(q, credit=1, options=QUEUE).receive(timeout=WAIT).body == "kept"
    first.close()
    assert receive_all(connect().create_receiver(q, credit=10, options=QUEUE)) == ["kept"]


def test_topic_fanout(connect, name):
    """Two subscribers of a topic each get every message; one that subscribes later gets none of
    the earlier ones."""
    conn = connect()
    t = name("topic")
    a = conn.create_receiver(t, credit=10, options=TOPIC)
    b = connect().create_receiver(t, credit=10, options=TOPIC)
    sender = conn.create_sender(t, options=TOPIC)
    for i in range(3):
        sender.send(Message(body=f"t{i}"))
    late = connect().create_receiver(t, credit=10, options=TOPIC)
    assert receive_all(a) == ["t0", "t1", "t2"]
    assert receive_all(b) == ["t0", "t1", "t2"]
    assert receive_all(late) == []


def test_durable_subscription(connect, name):
    """A durable subscription (container id + link name, source durable with expiry never) keeps
    what is published while its subscriber is away; closing its link (detach closed) deletes it."""
    t, sub, container = name("durable"), name("sub"), name("container")
    options = [TOPIC, DurableSubscription()]
    subscriber = connect(container_id=container)
    subscriber.create_receiver(t, credit=10, name=sub, options=options)
    subscriber.close()  # the connection goes; its link is detached, not closed: the subscription stays
    sender = connect().create_sender(t, options=TOPIC)
    sender.send(Message(body="while-away-1"))
    sender.send(Message(body="while-away-2"))
    back = connect(container_id=container)
    receiver = back.create_receiver(t, credit=10, name=sub, options=options)
    assert receive_all(receiver) == ["while-away-1", "while-away-2"]
    receiver.close()  # detach with closed=true: unsubscribe
    back.close()
    sender.send(Message(body="after-unsubscribe"))
    fresh = connect(container_id=container)
    assert receive_all(fresh.create_receiver(t, credit=10, name=sub, options=options)) == []


def test_large_message_2mb(connect, name):
    """A 2 MiB binary body (many frames) arrives byte for byte."""
    conn = connect()
    q = name("large")
    body = bytes((i * 31 + (i >> 8)) & 0xFF for i in range(2 * 1024 * 1024))
    conn.create_sender(q, options=QUEUE).send(Message(body=body))
    receiver = conn.create_receiver(q, credit=1, options=QUEUE)
    m = receiver.receive(timeout=30)
    receiver.accept()
    assert len(m.body) == len(body) and m.body == body


def test_selector(connect, name):
    """A receiver with an apache.org:selector-filter:string gets only the matching messages; the
    others stay on the queue."""
    conn = connect()
    q = name("selector")
    sender = conn.create_sender(q, options=QUEUE)
    for i, color in enumerate(["red", "blue", "red"]):
        sender.send(Message(body=f"{color}{i}", properties={"color": color}))
    red = conn.create_receiver(q, credit=10, options=[QUEUE, Selector("color = 'red'")])
    assert receive_all(red) == ["red0", "red2"]
    red.close()
    assert receive_all(conn.create_receiver(q, credit=10, options=QUEUE)) == ["blue1"]


def test_anonymous_relay(connect, name):
    """A sender without a target address delivers each message to the address it carries."""
    conn = connect()
    q1, q2 = name("relay1"), name("relay2")
    r1 = conn.create_receiver(q1, credit=10, options=QUEUE)
    r2 = conn.create_receiver(q2, credit=10, options=QUEUE)
    relay = conn.create_sender(None)
    relay.send(Message(address=q1, body="to-1"))
    relay.send(Message(address=q2, body="to-2"))
    assert receive_all(r1) == ["to-1"]
    assert receive_all(r2) == ["to-2"]


# proton reports a failed SASL outcome as this condition; a broker that is not there gives
# another one, so these scenarios cannot pass without a broker refusing the login.
REFUSED = "amqp:unauthorized-access"


def test_bad_password_refused(name):
    """A wrong password fails the SASL exchange: the connection is refused."""
    with pytest.raises(ConnectionException, match=REFUSED):
        open_connection(password="wrong-" + uuid.uuid4().hex).close()


def test_unknown_user_refused(name):
    """An unknown user is refused the same way."""
    with pytest.raises(ConnectionException, match=REFUSED):
        open_connection(user="nobody-" + uuid.uuid4().hex, password="x").close()
