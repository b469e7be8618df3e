"""dockyard: provision an EC2 Docker host, set up its engine over SSH, deploy isolated apps on it.

The pipeline every command follows: playbook → spec → render → facts → plan → apply → report.
"""

__version__ = "0.1.0"
