"""The FTS5 query built from user text is always valid and means "all these words"."""

import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from libervia.backend.memory.storage.base import fts5_query


def test_words_are_quoted() -> None:
    """Operators and quotes in user text are searched as plain words."""
    assert fts5_query('cats AND "dogs" NEAR(x*') == '"cats" "AND" """dogs""" "NEAR(x*"'
    assert fts5_query("   ") == '""'


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"])))
def test_any_text_is_a_valid_query(text: str) -> None:
    """No user text makes FTS5 raise a syntax error."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(body)")
    conn.execute("INSERT INTO t VALUES ('some words here')")
    conn.execute("SELECT rowid FROM t WHERE t MATCH ?", (fts5_query(text),)).fetchall()
    conn.close()
