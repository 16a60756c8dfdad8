"""The schema: migrations apply once, and the hot queries use the partial indexes of m007."""

import sqlite3

import pytest

from common.db import maintenance_engine
from common.migrations import all_migrations, current_version, migrate

HOT_QUERIES = {
    "SELECT COUNT(*) FROM generations WHERE owner = :o AND state = 'running'": "ix_generations_owner_state",
    "SELECT message_id FROM generations WHERE worker = :o AND state = 'running' AND cancel_requested":
        "ix_generations_worker_state",
    "SELECT id FROM messages WHERE stream_status = 'streaming'": "ix_messages_streaming",
    "SELECT id FROM chat_sessions WHERE user_id = :o ORDER BY updated_at DESC LIMIT 20": "ix_sessions_user",
    "SELECT id FROM chat_sessions WHERE anon_key = :o ORDER BY updated_at DESC LIMIT 20": "ix_sessions_anon",
    "SELECT SUM(total_tokens) FROM usage_records WHERE user_id = :o AND day = :o": "ix_usage_user_day",
    "SELECT id FROM usage_records WHERE anon_key = :o": "ix_usage_anon",
}


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "parley.db"
    engine = maintenance_engine(f"sqlite:///{path}")
    migrate(engine)
    yield engine, path
    engine.dispose()


def test_migrating_again_applies_nothing(database):
    engine, _path = database
    assert migrate(engine) == []
    assert current_version(engine) == max(m.version for m in all_migrations())


@pytest.mark.parametrize("query", sorted(HOT_QUERIES))
def test_a_hot_query_uses_its_partial_index(database, query):
    # A status bound as a parameter instead of a literal would silently scan the whole table.
    _engine, path = database
    with sqlite3.connect(path) as conn:
        plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query, {"o": "x"}))
    assert f"INDEX {HOT_QUERIES[query]} " in plan
