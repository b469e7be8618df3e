"""Invoke entry point: `invoke --list` shows dockyard's tasks (the same ones as the `dockyard` command)."""

from provision.cli import namespace

ns = namespace
