"""What the tests share besides fixtures: environments, processes, servers and checks.

Test files and conftests import it as ``support`` (``tests/`` is on ``sys.path`` because
``tests/conftest.py`` sits in a folder without ``__init__.py``); ``conftest.py`` files hold
only fixtures built from these pieces.

- ``simenv``: the simulator with settings for it (``SimEnv``), and env files for the real process;
- ``syncenv``: a served simulator with a ``SyncContext`` (``SyncEnv``), as the sync tests use it;
- ``reliability``: the reliability suite's bigger simulator, fast-failure settings, ``RelEnv``;
- ``apienv``: an API client on a served simulator, recording every request (``ApiEnv``);
- ``simapi``: plain HTTP calls to the simulator, for its own tests (``Api``);
- ``database``: the PostgreSQL server, throwaway databases, an embedded server to stop and start;
- ``groundtruth``: what the database holds against the simulator's truth;
- ``runs``: a run's traces in the database (log rows, cursors, ``running`` rows);
- ``batches``: every batch the loader stored, and whether it committed;
- ``cli``: one ``breezeway-daemon`` command as a child process;
- ``daemon``: ``breezeway-daemon serve`` as a child process, with its sd_notify socket;
- ``mail``: a real SMTP server (aiosmtpd) keeping every message;
- ``alerts``: the alert tests' credentials and recipients, and the alerts.log records;
- ``recorder``: the simulator with every request's token recorded; ``leaks``: secrets in outputs;
- ``served``: an ASGI app on 127.0.0.1, and a webhook ``Receiver``;
- ``webhooks``: a synced region with the webhook receiver and worker (``Hooks``).
"""

import pkgutil

import pytest

# Helpers that assert say why, as the test files and conftests do (each module is marked
# before its first import; the package itself is already importing, hence one by one).
pytest.register_assert_rewrite(*(f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__)))
