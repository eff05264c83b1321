"""Fixtures shared by the whole suite live in pvtest.py (a uniquely named module, so test
files can import its helpers while other directories have conftest.py files of their own)."""

from pvtest import *  # noqa: F401,F403 - registers the fixtures
from pvtest import compare, program, pyvisor_cli, run, world_tmp  # noqa: F401


def pytest_addoption(parser):  # type: ignore[no-untyped-def]
    parser.addoption("--platform", default=None, choices=("ptrace", "systrap"),
                     help="the platform every sandbox of the suite runs on (sets "
                     "$PYVISOR_PLATFORM, the default of pyvisor's --platform); default: "
                     "$PYVISOR_PLATFORM, else ptrace")


def pytest_configure(config):  # type: ignore[no-untyped-def]
    import os
    name = config.getoption("--platform")
    if name:
        os.environ["PYVISOR_PLATFORM"] = name


def pytest_report_header(config):  # type: ignore[no-untyped-def]
    import os
    return f"pyvisor platform: {os.environ.get('PYVISOR_PLATFORM') or 'ptrace'}"
