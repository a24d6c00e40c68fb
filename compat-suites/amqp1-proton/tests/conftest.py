"""Fixtures for the AMQP 1.0 scenarios with python-qpid-proton: blocking connections closed after
each scenario, unique names, and AMQP1_SCENARIOS selection (space-separated scenario ids; the test
for id X is test_X)."""
import os
import uuid

import pytest
from proton import Data, SSLDomain, symbol
from proton.reactor import LinkOption
from proton.utils import BlockingConnection


def pytest_collection_modifyitems(config, items):
    wanted = os.environ.get("AMQP1_SCENARIOS", "").split()
    if not wanted:
        return
    keep = [i for i in items if i.name.removeprefix("test_") in wanted]
    unknown = set(wanted) - {i.name.removeprefix("test_") for i in items}
    if unknown:
        raise pytest.UsageError(f"unknown scenario ids in AMQP1_SCENARIOS: {sorted(unknown)}")
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep


def credentials():
    return os.environ.get("AMQP1_USER", "guest"), os.environ.get("AMQP1_PASSWORD", "guest")


def ssl_domain():
    """For amqps:// URLs: verify the server's certificate and name against AMQP1_CA (a PEM file),
    or against the system's CAs when AMQP1_CA is not set."""
    if not os.environ["AMQP1_URL"].startswith("amqps://"):
        return None
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    if os.environ.get("AMQP1_CA"):
        domain.set_trusted_ca_db(os.environ["AMQP1_CA"])
    domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    return domain


def open_connection(user=None, password=None, **kwargs):
    """A blocking connection to AMQP1_URL with SASL PLAIN (the configured login by default)."""
    default_user, default_password = credentials()
    return BlockingConnection(os.environ["AMQP1_URL"], timeout=20, ssl_domain=ssl_domain(),
                              user=default_user if user is None else user,
                              password=default_password if password is None else password,
                              allowed_mechs="PLAIN", **kwargs)


class Capabilities(LinkOption):
    """Sets the capabilities of the node a link attaches to (the source of a receiver, the target
    of a sender), as the AMQP JMS mapping does: "queue" or "topic"."""

    def __init__(self, *caps):
        self.caps = caps

    def apply(self, link):
        terminus = link.source if link.is_receiver else link.target
        terminus.capabilities.put_array(False, Data.SYMBOL)
        terminus.capabilities.enter()
        for cap in self.caps:
            terminus.capabilities.put_symbol(symbol(cap))
        terminus.capabilities.exit()


QUEUE = Capabilities("queue")
TOPIC = Capabilities("topic")


@pytest.fixture
def connect():
    opened = []

    def make(**kwargs):
        c = open_connection(**kwargs)
        opened.append(c)
        return c

    yield make
    for c in opened:
        try:
            c.close()
        except Exception:
            pass


@pytest.fixture
def name():
    def make(prefix="s"):
        return f"amqp1-{prefix}-{uuid.uuid4().hex[:10]}"

    return make
