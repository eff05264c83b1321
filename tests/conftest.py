"""Fixtures shared by the whole suite live in pvtest.py (a uniquely named module, so test
files can import its helpers while other directories have conftest.py files of their own)."""

from pvtest import *  # noqa: F401,F403 - registers the fixtures
from pvtest import compare, program, pyvisor_cli, run, world_tmp  # noqa: F401
