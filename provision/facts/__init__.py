"""Facts: what is there now. Each module pairs one batched read (a shell script run in ONE SSH round trip,
or one API call per kind) with a pure parser into frozen dataclasses, so plans are unit-tested on recorded
output.

- `provision.facts.engine`: OS, architecture, package manager, Docker engine, daemon.json, service, groups.
- `provision.facts.apps`: containers, images, networks, volumes carrying dockyard's labels.
- `provision.facts.aws`: the EC2 instance, security group and key pair.
"""
