"""The index: users, their tokens, and one row per dataset.

:class:`Index` is what the rest of the server uses; :class:`SQLiteIndex`
implements it with the standard library's ``sqlite3`` (a file in the data
directory).  The SQL is plain SQL-92 with ``?`` placeholders that
:meth:`Index.sql` rewrites for the driver, so that a PostgreSQL index is a
subclass that only opens connections (and sets ``placeholder = "%s"``).

A dataset row holds the columns that listing and filtering need; the rest of
what was read from the tarball (metadata, iterations, sysinfo, tool data
series, the list of files) is one JSON document beside them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tokens (
        hash VARCHAR(64) PRIMARY KEY,
        user_name VARCHAR(64) NOT NULL,
        created VARCHAR(32) NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS datasets (
        id VARCHAR(32) PRIMARY KEY,
        name VARCHAR(255) NOT NULL UNIQUE,
        owner VARCHAR(64) NOT NULL,
        access VARCHAR(16) NOT NULL,
        controller VARCHAR(255) NOT NULL,
        config VARCHAR(255) NOT NULL,
        benchmark VARCHAR(255) NOT NULL,
        run_date VARCHAR(32) NOT NULL,
        status VARCHAR(32) NOT NULL,
        size BIGINT NOT NULL,
        uploaded VARCHAR(32) NOT NULL,
        hosts TEXT NOT NULL,
        tools TEXT NOT NULL,
        search_text TEXT NOT NULL,
        doc TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS datasets_date ON datasets (run_date)",
    "CREATE INDEX IF NOT EXISTS datasets_owner ON datasets (owner)",
)

SUMMARY_COLUMNS = (
    "id, name, owner, access, controller, config, benchmark, run_date, status, size, "
    "uploaded, hosts, tools"
)


@dataclass
class Dataset:
    """One uploaded result: its id is the tarball's MD5."""

    id: str
    name: str
    owner: str
    access: str
    controller: str
    config: str
    benchmark: str
    date: str
    status: str
    size: int
    uploaded: str
    hosts: list[str]
    tools: list[str]
    #: metadata, iterations, sysinfo, series, files; None in listings
    doc: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("doc")
        return data

    def visible_to(self, user: str | None) -> bool:
        return self.access == "public" or (user is not None and user == self.owner)


@dataclass(frozen=True)
class Filters:
    """What a listing asks for; empty fields match everything."""

    user: str = ""
    controller: str = ""
    benchmark: str = ""
    config: str = ""
    since: str = ""
    until: str = ""
    text: str = ""
    limit: int = 100
    offset: int = 0


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Index:
    """The index; subclasses provide :meth:`connect`."""

    placeholder: ClassVar[str] = "?"

    def connect(self) -> Any:  # a DB-API 2 connection
        raise NotImplementedError

    def integrity_errors(self) -> tuple[type[Exception], ...]:
        """The driver's exceptions that :meth:`add` raises for a duplicate id or name."""
        raise NotImplementedError

    def sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    @contextlib.contextmanager
    def cursor(self) -> Iterator[Any]:
        conn = self.connect()
        try:
            cur = conn.cursor()
            yield cur
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def create_schema(self) -> None:
        with self.cursor() as cur:
            for statement in SCHEMA:
                cur.execute(statement)

    # --- users ------------------------------------------------------------------

    def add_token(self, user: str, token_hash: str) -> None:
        with self.cursor() as cur:
            cur.execute(
                self.sql("INSERT INTO tokens (hash, user_name, created) VALUES (?, ?, ?)"),
                (token_hash, user, now()),
            )

    def user_for_token(self, token_hash: str) -> str | None:
        with self.cursor() as cur:
            cur.execute(self.sql("SELECT user_name FROM tokens WHERE hash = ?"), (token_hash,))
            row = cur.fetchone()
        return str(row[0]) if row else None

    # --- datasets ---------------------------------------------------------------

    def add(self, ds: Dataset) -> None:
        """Add a dataset; raises the driver's IntegrityError when its id or name exists."""
        self.add_many([ds])

    def add_many(self, datasets: Iterable[Dataset]) -> None:
        """Add datasets in one transaction (all or none)."""
        with self.cursor() as cur:
            cur.executemany(
                self.sql(
                    f"INSERT INTO datasets ({SUMMARY_COLUMNS}, search_text, doc) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                (self._values(ds) for ds in datasets),
            )

    @staticmethod
    def _values(ds: Dataset) -> tuple[Any, ...]:
        doc = ds.doc or {}
        words = [ds.name, ds.controller, ds.config, ds.benchmark, *ds.hosts, *ds.tools]
        words += [str(it.get("name", "")) for it in doc.get("iterations", [])]
        return (
            ds.id,
            ds.name,
            ds.owner,
            ds.access,
            ds.controller,
            ds.config,
            ds.benchmark,
            ds.date,
            ds.status,
            ds.size,
            ds.uploaded,
            json.dumps(ds.hosts),
            json.dumps(ds.tools),
            " ".join(words).lower(),
            json.dumps(doc),
        )

    def _row(self, row: Sequence[Any], doc: str | None = None) -> Dataset:
        (ident, name, owner, access, controller, config, benchmark, date, status) = row[:9]
        return Dataset(
            id=ident,
            name=name,
            owner=owner,
            access=access,
            controller=controller,
            config=config,
            benchmark=benchmark,
            date=date,
            status=status,
            size=int(row[9]),
            uploaded=row[10],
            hosts=json.loads(row[11]),
            tools=json.loads(row[12]),
            doc=json.loads(doc) if doc is not None else None,
        )

    def get(self, dataset_id: str) -> Dataset | None:
        with self.cursor() as cur:
            cur.execute(
                self.sql(f"SELECT {SUMMARY_COLUMNS}, doc FROM datasets WHERE id = ?"),
                (dataset_id,),
            )
            row = cur.fetchone()
        return self._row(row[:-1], row[-1]) if row else None

    def id_for_name(self, name: str) -> str | None:
        with self.cursor() as cur:
            cur.execute(self.sql("SELECT id FROM datasets WHERE name = ?"), (name,))
            row = cur.fetchone()
        return str(row[0]) if row else None

    def set_access(self, dataset_id: str, access: str) -> None:
        with self.cursor() as cur:
            cur.execute(
                self.sql("UPDATE datasets SET access = ? WHERE id = ?"), (access, dataset_id)
            )

    def delete(self, dataset_id: str) -> None:
        with self.cursor() as cur:
            cur.execute(self.sql("DELETE FROM datasets WHERE id = ?"), (dataset_id,))

    def search(self, filters: Filters, viewer: str | None) -> tuple[int, list[Dataset]]:
        """The datasets ``viewer`` may see that match, newest first; and how many match."""
        where = ["(access = 'public' OR owner = ?)"]
        params: list[Any] = [viewer or ""]
        for column, value in (
            ("owner", filters.user),
            ("controller", filters.controller),
            ("benchmark", filters.benchmark),
            ("config", filters.config),
        ):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if filters.since:
            where.append("run_date >= ?")
            params.append(filters.since)
        if filters.until:
            # a bare date includes the whole day
            where.append("run_date <= ?")
            params.append(filters.until + ("T99" if len(filters.until) == 10 else ""))
        for word in filters.text.lower().split():
            # the user's words are matched literally: % and _ are no wildcards
            where.append("search_text LIKE ? ESCAPE '\\'")
            params.append("%" + _like_literal(word) + "%")
        clause = " AND ".join(where)
        with self.cursor() as cur:
            cur.execute(self.sql(f"SELECT COUNT(*) FROM datasets WHERE {clause}"), params)
            total = int(cur.fetchone()[0])
            cur.execute(
                self.sql(
                    f"SELECT {SUMMARY_COLUMNS} FROM datasets WHERE {clause} "
                    "ORDER BY run_date DESC, name LIMIT ? OFFSET ?"
                ),
                [*params, filters.limit, filters.offset],
            )
            rows = cur.fetchall()
        return total, [self._row(r) for r in rows]


class SQLiteIndex(Index):
    """The index in one SQLite file; a connection per use, WAL for concurrent readers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        conn = sqlite3.connect(self.path)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        self.create_schema()

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def integrity_errors(self) -> tuple[type[Exception], ...]:
        return (sqlite3.IntegrityError,)


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
