"""`python -m provision` is the `dockyard` command (handy before the package is installed)."""

from provision.cli import main

main()
