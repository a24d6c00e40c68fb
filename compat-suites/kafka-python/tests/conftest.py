"""Shared fixtures for the kafka-python compatibility scenario."""
import os

import pytest

# Lines collected during the run and printed in pytest's terminal summary
# (before pytest's own final summary line), e.g. negotiated protocol versions.
DIAGNOSTICS = []


@pytest.fixture(scope="session")
def bootstrap():
    addr = os.environ.get("KAFKA_BOOTSTRAP", "").strip()
    if not addr:
        pytest.fail("KAFKA_BOOTSTRAP is not set (use ./run HOST:PORT)")
    return addr


@pytest.fixture(scope="session")
def diag():
    return DIAGNOSTICS


def pytest_terminal_summary(terminalreporter):
    if DIAGNOSTICS:
        terminalreporter.section("kafka-python diagnostics")
        for line in DIAGNOSTICS:
            terminalreporter.write_line(line)
