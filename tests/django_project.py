"""A Django project as a new user has one, made with a real Django for the `template: django` tests:
`django-admin startproject mysite` + `startapp notes` with one model and its migration, in a throwaway venv
(nothing generated is committed). The only edits are the ones any developer makes (the app in
INSTALLED_APPS, the model); none is for deployment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DJANGO = "Django==5.2.19"  # the version the template installs when a project has no requirements.txt
MODEL_V1 = ("from django.db import models\n\n\nclass Note(models.Model):\n"
            "    text = models.CharField(max_length=200)\n")
MODEL_V2 = MODEL_V1 + "    pinned = models.BooleanField(default=False)\n"


def run(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{argv[:3]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def make_project(root: Path) -> tuple[Path, Path]:
    """`django-admin startproject mysite` + `startapp notes` (one model, its migration): the project's files
    are Django's own output; the only edits are the ones any developer makes (the app in INSTALLED_APPS, the
    model). Returns (project dir, the venv's python)."""
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)], root)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", DJANGO], root)
    run([str(venv / "bin" / "django-admin"), "startproject", "mysite"], root)
    project = root / "mysite"
    run([str(python), "manage.py", "startapp", "notes"], project)
    settings = project / "mysite" / "settings.py"
    text = settings.read_text()
    assert "INSTALLED_APPS = [\n" in text
    settings.write_text(text.replace("INSTALLED_APPS = [\n", "INSTALLED_APPS = [\n    'notes',\n", 1))
    (project / "notes" / "models.py").write_text(MODEL_V1)
    run([str(python), "manage.py", "makemigrations", "notes"], project)
    assert (project / "notes" / "migrations" / "0001_initial.py").is_file()
    return project, python


def add_field(project: Path, python: Path) -> None:
    """A new field on the model and its migration (0002_…), as `makemigrations` writes it."""
    (project / "notes" / "models.py").write_text(MODEL_V2)
    run([str(python), "manage.py", "makemigrations", "notes"], project)
    assert list((project / "notes" / "migrations").glob("0002_*.py"))
