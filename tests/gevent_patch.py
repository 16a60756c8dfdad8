"""Loaded by pytest before any other plugin (`-p tests.gevent_patch` in pyproject): gevent must patch
the standard library before ssl and sockets are imported, exactly as the gunicorn gevent worker does."""

from gevent import monkey

monkey.patch_all()
