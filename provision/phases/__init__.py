"""The phase cores the CLI calls: provision/teardown (`host.py`), `setup.py`, `deploy.py`, and `up.py` (provision →
setup → deploy, and `recreate`, composed in one place).

Each core takes the validated Playbook, explicit options and a reporter (anything with the Reporter interface;
never invoke's Context) and returns a typed result. It never prints: progress lines go through
`reporter.info`/`warn`. A phase's recap is its Runners' (`runner.recap`), never rebuilt from what a console saw.
Nothing here imports provision.cli.
"""
