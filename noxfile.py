#!/usr/bin/env -S uv run --script
# /// script
# dependencies = ["nox"]
# ///
"""Task runner: ``nox -l`` lists the sessions, ``nox -s tests`` runs one.

The sessions install the project the way the README and ``.ci/run`` do (with the
``torch==2.13.0`` pin in the same pip call), into nox-managed virtualenvs.
"""

from __future__ import annotations

import nox

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "uv|virtualenv"

TORCH = "torch==2.13.0"  # same pin as the README and .ci/run


@nox.session(default=True)
def lint(session: nox.Session) -> None:
    """Run the pre-commit hooks (ruff, file hygiene) on every file."""
    session.install("pre-commit")
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure", *session.posargs)


@nox.session(default=True)
def tests(session: nox.Session) -> None:
    """Run the test suite; extra arguments go to pytest (``nox -s tests -- -k io``)."""
    session.install(TORCH, "-e", ".[all]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(default=False)
def mypy(session: nox.Session) -> None:
    """Type-check lloca_hep with the settings in pyproject.toml."""
    session.install(TORCH, "-e", ".[all]")  # mypy comes with the test extra
    session.run("python", "-m", "mypy", *session.posargs)


if __name__ == "__main__":
    nox.main()
