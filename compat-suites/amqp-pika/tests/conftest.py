"""Fixtures for the AMQP scenarios: a connection and channel per scenario, unique names, and
AMQP_SCENARIOS selection (space-separated scenario ids; the test for id X is test_X)."""
import os
import uuid

import pika
import pytest


def pytest_collection_modifyitems(config, items):
    wanted = os.environ.get("AMQP_SCENARIOS", "").split()
    if not wanted:
        return
    keep = [i for i in items if i.name.removeprefix("test_") in wanted]
    unknown = set(wanted) - {i.name.removeprefix("test_") for i in items}
    if unknown:
        raise pytest.UsageError(f"unknown scenario ids in AMQP_SCENARIOS: {sorted(unknown)}")
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep


def params(**overrides):
    p = pika.URLParameters(os.environ["AMQP_URL"])
    p.socket_timeout = 10
    p.blocked_connection_timeout = 30
    for k, v in overrides.items():
        setattr(p, k, v)
    return p


@pytest.fixture
def connect():
    opened = []

    def make(**overrides):
        c = pika.BlockingConnection(params(**overrides))
        opened.append(c)
        return c

    yield make
    for c in opened:
        if c.is_open:
            try:
                c.close()
            except Exception:
                pass


@pytest.fixture
def conn(connect):
    return connect()


@pytest.fixture
def ch(conn):
    return conn.channel()


@pytest.fixture
def name():
    """Makes unique names (compat-<prefix>-<random>). Whatever queue or exchange got one of them
    is deleted after the scenario, even when it failed half-way, so nothing is left behind."""
    made = []

    def make(prefix="s"):
        made.append(f"compat-{prefix}-{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield make
    if not made:
        return
    try:
        c = pika.BlockingConnection(params())
    except Exception:
        return  # the broker is gone; the scenario has already failed
    try:
        for n in made:
            for delete in ("queue_delete", "exchange_delete"):
                try:
                    getattr(c.channel(), delete)(n)  # deleting what is not there is fine
                except Exception:
                    pass
    finally:
        if c.is_open:
            c.close()
