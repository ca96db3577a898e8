"""tests/conftest.py keeps the ``e2e`` marker honest: shown on a throwaway suite run by pytester."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parent / "conftest.py"

pytestmark = pytest.mark.e2e  # the inner tests start processes and open sockets

SUITE = """
import socket
import subprocess

import pytest


def test_pure():
    assert sum([1, 2]) == 3


def test_starts_a_process():
    subprocess.run(["true"], check=True)


@pytest.mark.e2e
def test_marked_starts_a_process():
    subprocess.run(["true"], check=True)


def test_binds_a_socket():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))


@pytest.fixture(scope="module")
def server():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


@pytest.mark.e2e
def test_marked_sets_up_the_server(server):
    pass


def test_unmarked_gets_the_server_from_the_cache(server):
    pass


def test_uses_an_e2e_fixture(tiny_llama):
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini("[pytest]\nmarkers =\n    e2e: e2e\naddopts = --strict-markers\n")
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_an_unmarked_test_that_starts_a_process_or_opens_a_socket_fails(
    suite: pytest.Pytester,
) -> None:
    result = suite.runpytest("-p", "no:cacheprovider", "-p", "no:xdist", "-rfE")
    result.assert_outcomes(passed=4, failed=2, errors=1)
    result.stdout.fnmatch_lines(
        [  # in report order: errors, then failures
            # set up by the marked test before it, still the fixture's doing
            "*test_unmarked_gets_the_server_from_the_cache is not marked e2e but in its "
            "set-up used: fixture server (its set-up did)*",
            "*test_starts_a_process is not marked e2e but in its call used: "
            "subprocess.Popen *true*",
            "*test_binds_a_socket is not marked e2e but in its call used: socket.bind*",
        ]
    )


def test_an_e2e_fixture_marks_its_users_and_make_test_fast_deselects_them(
    suite: pytest.Pytester,
) -> None:
    # a subprocess: a unit-only run refuses the model stack, which this process has loaded
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "-m", "not e2e")
    # test_pure and the three unmarked offenders are unit tests by their marks
    result.assert_outcomes(passed=1, failed=2, errors=1)
    assert "test_uses_an_e2e_fixture" not in result.stdout.str()


def test_a_unit_only_run_refuses_the_model_stack(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini("[pytest]\nmarkers =\n    e2e: e2e\n")
    pytester.makepyfile(test_torch="def test_imports_torch():\n    import torch  # noqa: F401\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*torch is the model stack: mark the test e2e*"])
