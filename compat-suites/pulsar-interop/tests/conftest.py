"""Shared fixtures: the Kafka endpoint (the gateway) and the Pulsar cluster behind it."""
import logging
import os

import pulsar
import pytest

# Lines collected during the run and printed in pytest's terminal summary
# (before pytest's own final summary line).
DIAGNOSTICS = []


def _env(name):
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.fail(f"{name} is not set (use ./run HOST:PORT with PULSAR_URL and PULSAR_ADMIN_URL set)")
    return value


@pytest.fixture(scope="session")
def bootstrap():
    return _env("KAFKA_BOOTSTRAP")


@pytest.fixture(scope="session")
def pulsar_url():
    return _env("PULSAR_URL")


@pytest.fixture(scope="session")
def admin_url():
    return _env("PULSAR_ADMIN_URL").rstrip("/")


@pytest.fixture(scope="session")
def pulsar_client(pulsar_url):
    # The C++ client's log goes through Python logging, so pytest shows it on failures.
    client = pulsar.Client(
        pulsar_url,
        operation_timeout_seconds=30,
        logger=logging.getLogger("pulsar-client"),
    )
    yield client
    client.close()


@pytest.fixture(scope="session")
def diag():
    return DIAGNOSTICS


def pytest_terminal_summary(terminalreporter):
    if DIAGNOSTICS:
        terminalreporter.section("pulsar-interop diagnostics")
        for line in DIAGNOSTICS:
            terminalreporter.write_line(line)
