"""dockyard's command line: one Invoke collection, loaded by `tasks.py` (so `invoke deploy -e staging`) and
by the `dockyard` console script (an invoke Program, so `dockyard deploy -e staging` is the same thing)."""

from __future__ import annotations

from invoke import Collection, Program
from invoke.config import Config

from provision import __version__
from provision.cli import aws, deploy, inspect, lock, pipeline, proxy, releases, setup
from provision.cli.common import DEFAULTS

namespace = Collection()
for _module in (inspect, aws, setup, deploy, pipeline, proxy, releases, lock):
    for _name in getattr(_module, "__all__", ()):
        namespace.add_task(getattr(_module, _name))
namespace.add_collection(lock.collection)  # lock.acquire, lock.status, lock.release
namespace.configure({"dockyard": dict(DEFAULTS)})


class DockyardConfig(Config):
    """The `dockyard` program reads dockyard.yaml and DOCKYARD_* where invoke reads invoke.yaml/INVOKE_*.

    Tasks also honour DOCKYARD_* under `invoke` (see provision.cli.common), so both entry points agree.
    """

    prefix = "dockyard"
    env_prefix = "DOCKYARD"


class DockyardProgram(Program):
    """Keeps the words after `--` as an argv list in the config (`dockyard_command_argv`) for `exec`: invoke's
    parser only keeps them as one joined string, and reading `sys.argv` breaks `Program.run(argv)`."""

    def update_config(self, merge: bool = True) -> None:
        super().update_config(merge=False)
        argv = list(self.argv or [])
        tail = argv[argv.index("--") + 1:] if "--" in argv else []
        self.config["dockyard_command_argv"] = tail  # a runtime modification: kept through later merges
        if merge:
            self.config.merge()


program = DockyardProgram(namespace=namespace, version=__version__, name="dockyard", binary="dockyard",
                          config_class=DockyardConfig)


def main() -> None:
    program.run()
