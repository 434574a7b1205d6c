"""pytest fixtures shared by the Python end-to-end tests
(tests/python/test_conversation.py, tests/cli/test_script.py,
tests/cli/test_terminal.py).

    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/cli/test_script.py \\
        --broker build/broker/zchat-broker --zchat build/client/zchat

--broker and --zchat name the binaries under test. `broker` starts a fresh
zchat-broker for each test (its own database in the test's tmp_path, a free
port on 127.0.0.1 read back from the broker) and expects it to exit 0 on
SIGTERM at teardown; a failing test's report carries the broker's log.
--python-only deselects the tests that need the zchat binary.
--store postgresql runs every broker on a database of its own in one
throwaway PostgreSQL server (zchat_testkit.Postgres) instead of an SQLite
file: the same tests against the other store.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
from zchat_testkit import Broker, Postgres  # noqa: E402


def pytest_addoption(parser):
    group = parser.getgroup("zchat", "zchat end-to-end tests")
    group.addoption("--broker", metavar="PATH", help="path to zchat-broker (required)")
    group.addoption("--zchat", metavar="PATH",
                    help="path to the zchat terminal client (required unless --python-only)")
    group.addoption("--python-only", action="store_true",
                    help="deselect the tests that need the zchat binary")
    group.addoption("--store", choices=("sqlite", "partitioned", "postgresql"),
                    default="sqlite",
                    help="the brokers' store: an SQLite file each (default), "
                         "SQLite in 3 partitions on 3 threads (--partitions), or a "
                         "database each on a throwaway PostgreSQL server")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--python-only"):
        return
    keep = [i for i in items if "zchat_bin" not in getattr(i, "fixturenames", ())]
    dropped = [i for i in items if i not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "broker_args(*flags): extra command-line flags for the test's broker")


def _binary(config, option):
    path = config.getoption(option)
    if path is None:
        pytest.fail(f"{option} PATH is required", pytrace=False)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{option} {path}: not an executable file", pytrace=False)
    return path


@pytest.fixture(scope="session")
def broker_bin(pytestconfig):
    """Path of the zchat-broker binary (--broker)."""
    return _binary(pytestconfig, "--broker")


@pytest.fixture(scope="session")
def zchat_bin(pytestconfig):
    """Path of the zchat terminal client (--zchat)."""
    return _binary(pytestconfig, "--zchat")


@pytest.fixture(scope="session")
def postgres(pytestconfig):
    """With --store postgresql, the throwaway PostgreSQL server of this run;
    otherwise None."""
    if pytestconfig.getoption("--store") != "postgresql":
        yield None
        return
    server = Postgres()
    yield server
    server.stop()


@pytest.fixture
def store_spec(postgres, tmp_path):
    """Where this test's brokers keep their state: a new SQLite file, or a
    new database on the run's PostgreSQL server (--store postgresql)."""
    return postgres.new_database() if postgres else str(tmp_path / "store.db")


@pytest.fixture
def broker(request, broker_bin, tmp_path, store_spec):
    """A fresh zchat-broker for this test; .endpoint is where it listens.
    A test marked broker_args(*flags) gets those extra flags."""
    directory = tmp_path / "broker"
    directory.mkdir()
    marker = request.node.get_closest_marker("broker_args")
    extra = tuple(marker.args) if marker else ()
    if request.config.getoption("--store") == "partitioned":
        extra += ("--partitions", "3", "--threads", "3")
    b = Broker(broker_bin, directory, extra_args=extra, db=store_spec)
    request.node.zchat_broker = b
    yield b
    rc = b.stop()
    assert rc == 0, (f"broker should exit 0 on SIGTERM, "
                     f"{'still running after 10 s' if rc is None else f'exit code {rc}'}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the broker's log to the report of a failed test."""
    outcome = yield
    report = outcome.get_result()
    b = getattr(item, "zchat_broker", None)
    if report.failed and b is not None:
        report.sections.append(("zchat-broker log", b.log() or "(empty)"))
