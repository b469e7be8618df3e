"""Template `django`: what it renders for a minimal playbook, the generated modules it writes into the image
(decoded from its RUN line and executed here against stand-in Django modules), and the settings module name
validated before it reaches Python source."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from provision.errors import InputError
from provision.playbook import load_playbook
from provision.render import RenderedDockerfile, render_dockerfile

pytestmark = pytest.mark.unit

MANAGE_PY = '''#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""
import os
import sys


def main():
    """Run administrative tasks."""
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)


if __name__ == '__main__':
    main()
'''


def render(tmp_path: Path, app: dict[str, Any], top: dict[str, Any] | None = None) -> RenderedDockerfile:
    doc: dict[str, Any] = {"project": "shop", "environment": "staging", "provider": "local",
                           "apps": {"web": {"template": "django", "port": 8000, **app}}, **(top or {})}
    path = tmp_path / "staging.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return render_dockerfile(load_playbook(path), "web")


def generated(text: str) -> dict[str, str]:
    """The files the Dockerfile's RUN writes under /opt/dockyard (one `path base64` pair a line): path → content."""
    pairs = [line.split()[:2] for line in text.splitlines() if line.startswith("      /opt/dockyard/")]
    return {path: base64.b64decode(word, validate=True).decode() for path, word in pairs}


def cmd(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if line.startswith("CMD ")]
    assert len(lines) == 1
    return json.loads(lines[0][4:])


def test_minimal_playbook_renders_an_image_that_serves_migrates_and_collects_static(tmp_path: Path) -> None:
    out = render(tmp_path, {"volumes": {"data": "/srv/data"}})
    text = out.text
    assert out.read_only and out.writable == ("/tmp",)
    assert out.release_command == ("python", "manage.py", "migrate", "--noinput")
    assert "DJANGO_SETTINGS_MODULE=dockyard_settings" in text and "HOME=/tmp" in text
    assert "COPY manage.py requirements*.txt /app/" in text  # requirements.txt optional
    assert "gunicorn==27.0.1" in text and "whitenoise==6.12.0" in text and "dj-database-url==3.1.2" in text
    collect = [line for line in text.splitlines() if "collectstatic" in line]
    assert collect == ["RUN SECRET_KEY=dockyard-collectstatic-at-build-only python manage.py collectstatic "
                       "--noinput"]
    assert not [line for line in text.splitlines() if line.startswith(("ENV SECRET_KEY", "ARG SECRET_KEY"))]
    argv = cmd(text)
    assert argv[0] == "gunicorn" and argv[-1] == "dockyard_wsgi:application"
    assert "--no-control-socket" in argv and argv[argv.index("--bind") + 1] == "0.0.0.0:8000"
    assert "DOCKYARD_DOMAINS" not in text  # no domains: the overlay allows the probe's host alone
    files = generated(text)
    assert set(files) == {"/opt/dockyard/dockyard_settings.py", "/opt/dockyard/dockyard_wsgi.py",
                          "/opt/dockyard/dockyard_find_settings.py"}
    assert '_DATA_DIR = os.environ.get("DOCKYARD_DATA_DIR") or "/srv/data"' in files[
        "/opt/dockyard/dockyard_settings.py"]  # the app's volume
    assert ("python3 /opt/dockyard/dockyard_find_settings.py /app/manage.py "
            "/opt/dockyard/dockyard_base_settings.py") in text
    for content in files.values():
        compile(content, "generated", "exec")  # valid Python


def test_settings_var_is_inserted_as_an_import_and_skips_the_guess(tmp_path: Path) -> None:
    out = render(tmp_path, {"vars": {"settings": "mysite.settings.production", "workers": 3,
                                     "wsgi": "mysite.wsgi:application"}})
    files = generated(out.text)
    assert "from mysite.settings.production import *" in files["/opt/dockyard/dockyard_base_settings.py"]
    assert "/opt/dockyard/dockyard_find_settings.py" not in out.text
    argv = cmd(out.text)
    assert argv[-1] == "mysite.wsgi:application" and argv[argv.index("--workers") + 1] == "3"


@pytest.mark.parametrize("bad", ["mysite.settings; import os", "mysite..settings", "1site.settings",
                                 "mysite.settings\nimport os", "", "os.system('x')"])
def test_a_settings_name_that_is_not_a_dotted_module_path_is_exit_2_at_its_key(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InputError) as exc:
        render(tmp_path, {"vars": {"settings": bad}})
    assert exc.value.exit_code == 2
    assert {p.key_path for p in exc.value.problems} == {"apps.web.vars.settings"}
    assert any("must be a dotted Python module path" in p.message for p in exc.value.problems)
    for p in exc.value.problems:
        assert "import os" not in p.message and "system" not in p.message  # the value is not echoed


def test_a_bad_top_level_settings_var_points_at_the_top_level_key(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        render(tmp_path, {}, top={"vars": {"settings": "a b"}})
    assert [p.key_path for p in exc.value.problems] == ["vars.settings"]


def test_a_relative_data_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        render(tmp_path, {"vars": {"data_dir": "data\"; import os"}})
    assert [p.key_path for p in exc.value.problems] == ["apps.web.vars.data_dir"]


def test_domains_reach_the_image_for_allowed_hosts(tmp_path: Path) -> None:
    out = render(tmp_path, {"domains": ["shop.example.com", "www.example.com"]}, top={"proxy": {"tls": "internal"}})
    assert 'ENV DOCKYARD_DOMAINS="shop.example.com www.example.com"' in out.text.splitlines()


# --- the generated modules, executed -------------------------------------------------------------------------

STUB_EXCEPTIONS = "class ImproperlyConfigured(Exception):\n    pass\n"
STUB_DJ_DATABASE_URL = ("def parse(url, **kw):\n"
                        "    return {'ENGINE': 'django.db.backends.postgresql', 'URL': url, **kw}\n")
PROJECT_SETTINGS = """
SECRET_KEY = 'django-insecure-from-startproject'
DEBUG = True
ALLOWED_HOSTS = []
MIDDLEWARE = ['django.middleware.security.SecurityMiddleware',
              'django.contrib.sessions.middleware.SessionMiddleware',
              'django.middleware.common.CommonMiddleware']
DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': '/app/db.sqlite3'},
             'other': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': '/app/other.sqlite3'}}
STATIC_URL = 'static/'
"""
REPORT = ("import json, dockyard_settings as s; print(json.dumps({k: getattr(s, k) for k in ("
          "'SECRET_KEY', 'DEBUG', 'ALLOWED_HOSTS', 'CSRF_TRUSTED_ORIGINS', 'DATABASES', 'MEDIA_ROOT', "
          "'STATIC_ROOT', 'STATIC_URL', 'MIDDLEWARE', 'SECURE_PROXY_SSL_HEADER') if hasattr(s, k)}))")


def overlay_env(tmp_path: Path, settings: str = PROJECT_SETTINGS) -> Path:
    """A directory standing in for the image's /opt/dockyard + /app: the generated modules, the project's
    settings (mysite/settings.py), and stand-ins for the two libraries the overlay imports."""
    out = render(tmp_path, {"volumes": {"data": "/data"}, "vars": {"settings": "mysite.settings"}})
    root = tmp_path / "image"
    for path, content in generated(out.text).items():
        (root / Path(path).name).parent.mkdir(parents=True, exist_ok=True)
        (root / Path(path).name).write_text(content)
    for rel, content in {"mysite/__init__.py": "", "mysite/settings.py": settings,
                         "django/__init__.py": "", "django/core/__init__.py": "",
                         "django/core/exceptions.py": STUB_EXCEPTIONS,
                         "dj_database_url.py": STUB_DJ_DATABASE_URL}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    return root


def run_overlay(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (
        "SECRET_KEY", "DATABASE_URL", "DOCKYARD_DOMAINS", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "DJANGO_DEBUG",
        "DOCKYARD_DATA_DIR")}
    return subprocess.run([sys.executable, "-c", REPORT], cwd=root, env={**clean, "PYTHONPATH": str(root), **env},
                          capture_output=True, text=True, timeout=30, check=False)


def test_overlay_takes_secret_hosts_database_media_and_static_from_the_environment(tmp_path: Path) -> None:
    root = overlay_env(tmp_path)
    done = run_overlay(root, {"SECRET_KEY": "s3cret-value", "DOCKYARD_DOMAINS": "shop.example.com *.example.org",
                              "ALLOWED_HOSTS": "extra.example.net"})
    assert done.returncode == 0, done.stderr
    s = json.loads(done.stdout)
    assert s["SECRET_KEY"] == "s3cret-value" and s["DEBUG"] is False
    assert s["ALLOWED_HOSTS"] == ["shop.example.com", ".example.org", "127.0.0.1", "localhost",
                                  "extra.example.net"]
    assert s["CSRF_TRUSTED_ORIGINS"] == ["https://shop.example.com", "http://shop.example.com",
                                         "https://*.example.org", "http://*.example.org"]
    assert s["DATABASES"]["default"] == {"ENGINE": "django.db.backends.sqlite3", "NAME": "/data/db.sqlite3"}
    assert s["DATABASES"]["other"]["NAME"] == "/app/other.sqlite3"  # only the default database moves
    assert s["MEDIA_ROOT"] == "/data/media" and s["STATIC_ROOT"] == "/opt/dockyard/static"
    assert s["STATIC_URL"] == "static/"  # the project's own
    assert s["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]  # behind the proxy
    assert s["MIDDLEWARE"] == ["django.middleware.security.SecurityMiddleware",
                               "whitenoise.middleware.WhiteNoiseMiddleware",
                               "django.contrib.sessions.middleware.SessionMiddleware",
                               "django.middleware.common.CommonMiddleware"]


def test_overlay_uses_database_url_when_given(tmp_path: Path) -> None:
    root = overlay_env(tmp_path)
    done = run_overlay(root, {"SECRET_KEY": "k", "DATABASE_URL": "postgres://u@db/shop", "DJANGO_DEBUG": "1"})
    assert done.returncode == 0, done.stderr
    s = json.loads(done.stdout)
    assert s["DEBUG"] is True
    assert s["DATABASES"]["default"]["URL"] == "postgres://u@db/shop"
    assert s["DATABASES"]["default"]["conn_max_age"] == 600
    assert s["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost"]  # the probe's host, nothing else
    assert "SECURE_PROXY_SSL_HEADER" not in s  # no domains: maybe published directly, the header is the client's


def test_overlay_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    root = overlay_env(tmp_path)
    done = run_overlay(root, {})
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and "SECRET_KEY is not set" in done.stderr
    assert "django-insecure-from-startproject" not in done.stderr  # the project's dev key is never used


def test_overlay_puts_whitenoise_first_without_security_middleware_and_never_twice(tmp_path: Path) -> None:
    settings = ("MIDDLEWARE = ('whitenoise.middleware.WhiteNoiseMiddleware', "
                "'django.middleware.common.CommonMiddleware')\n")
    done = run_overlay(overlay_env(tmp_path, settings), {"SECRET_KEY": "k"})
    assert done.returncode == 0, done.stderr
    s = json.loads(done.stdout)
    assert s["MIDDLEWARE"] == ["whitenoise.middleware.WhiteNoiseMiddleware",
                               "django.middleware.common.CommonMiddleware"]
    assert s["DATABASES"]["default"]["NAME"] == "/data/db.sqlite3" and s["STATIC_URL"] == "/static/"


# --- the settings guess (run at build when `settings` is not set) ---------------------------------------------

def find_settings(tmp_path: Path, manage_py: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    script = generated(render(tmp_path, {}).text)["/opt/dockyard/dockyard_find_settings.py"]
    (tmp_path / "find.py").write_text(script)
    (tmp_path / "manage.py").write_text(manage_py)
    target = tmp_path / "dockyard_base_settings.py"
    done = subprocess.run([sys.executable, str(tmp_path / "find.py"), str(tmp_path / "manage.py"), str(target)],
                          capture_output=True, text=True, timeout=30, check=False)
    return done, target


def test_the_settings_module_is_read_from_a_startproject_manage_py(tmp_path: Path) -> None:
    done, target = find_settings(tmp_path, MANAGE_PY.replace("mysite.settings", "mysite.settings.dev"))
    assert done.returncode == 0, done.stderr
    assert "from mysite.settings.dev import *" in target.read_text()


@pytest.mark.parametrize("manage_py", [
    "import os\n",  # no default at all
    MANAGE_PY.replace("'mysite.settings'", "'mysite.settings; import os'"),  # not a module path
    MANAGE_PY + "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'other.settings')\n",  # ambiguous
])
def test_no_clear_settings_default_fails_the_build_naming_the_variable(tmp_path: Path, manage_py: str) -> None:
    done, target = find_settings(tmp_path, manage_py)
    assert done.returncode == 1 and "set the app's variable `settings`" in done.stderr
    assert not target.exists()
