"""``pbench move-results`` / ``copy-results``: send finished results to a results server.

For each finished result directory under ``<run-dir>/results/``: tar it and
compress it with multi-threaded ``xz`` (the MD5 is computed while the
compressed bytes are written), then stream it with
``PUT /api/v1/upload/<name>.tar.xz``, headers ``Content-MD5`` and
``Authorization: Bearer <token>``.  Transient failures are retried with
backoff (urllib3 ``Retry``).  Only when the server has confirmed the MD5 is
the local copy removed (move) or marked as copied (copy).

The server and the token come from ``--server`` / ``--token``, else
``$PBENCH_SERVER`` / ``$PBENCH_ACCESS_TOKEN``, else ``[results]`` in
``pbench.toml`` (or ``[tool.pbench.results]`` in ``pyproject.toml``), else
``~/.config/pbench/results.toml`` (keys ``server`` and ``token``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from pbench_runner import procs
from pbench_runner.config import _read_toml, project_settings
from pbench_runner.errors import TransferError, UploadError, UsageError
from pbench_runner.tarballs import HashingWriter

SERVER_ENV: Final = "PBENCH_SERVER"
TOKEN_ENV: Final = "PBENCH_ACCESS_TOKEN"
#: statuses worth another try; the others are the server's final word
RETRY_STATUSES: Final = (429, 500, 502, 503, 504)
#: below this size no progress bar is drawn
PROGRESS_MIN_BYTES: Final = 8 << 20
#: files read first by the server's indexer
FIRST: Final = ("metadata.log", "metadata.json", "result.json")
#: how long xz may take to finish once its input has ended
XZ_DEADLINE: Final = 600.0
#: a client's staging folder in ``results/``: ``.upload-<pid>-<random>``
STAGING_PREFIX: Final = ".upload-"


@dataclass(frozen=True)
class ServerSettings:
    url: str
    token: str


def user_config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pbench" / "results.toml"


def server_settings(url: str | None, token: str | None) -> ServerSettings:
    """The results server and token: options, then environment, then config files."""
    project = project_settings().get("results", {})
    user_file = user_config_file()
    user = _read_toml(user_file)
    chosen_url = url or os.environ.get(SERVER_ENV) or project.get("server") or user.get("server")
    chosen_token = token or os.environ.get(TOKEN_ENV) or project.get("token") or user.get("token")
    if not chosen_url:
        raise UsageError(
            f"no results server: give --server URL, set ${SERVER_ENV}, or put "
            f"server = 'http://HOST:PORT' in [results] of pbench.toml or in {user_file}"
        )
    if not chosen_token:
        raise UsageError(
            f"no access token for {chosen_url}: give --token, set ${TOKEN_ENV}, or put "
            f"token = '...' in {user_file}; the server's admin makes one with "
            "`pbench server token create --user NAME`"
        )
    if not str(chosen_url).startswith(("http://", "https://")):
        raise UsageError(f"bad results server URL {chosen_url!r}: it must start with http(s)://")
    return ServerSettings(str(chosen_url).rstrip("/"), str(chosen_token))


def copied_marker(result_dir: Path) -> Path:
    """Beside the result directory, so that the tarball (and its MD5) stays the same."""
    return result_dir.with_name(result_dir.name + ".copied")


def finished_results(
    run_dir: Path, names: list[str], skip_copied_to: str | None = None, *, moving: bool = False
) -> list[Path]:
    """Result directories to send: the named ones, or every finished one (but those
    copied to the server ``skip_copied_to`` already).  When ``moving``, a named one
    that :func:`remove_result` would refuse to delete is refused here, before anything
    is sent."""
    base = run_dir / "results"
    if names:
        chosen = []
        for name in names:
            path = Path(name) if os.sep in name else base / name
            if not (path / "metadata.json").is_file():
                raise UsageError(f"{path} is not a result directory (it has no metadata.json)")
            if _status(path) == "running":
                raise UsageError(f"{path} is still running; send it once the run has finished")
            if moving and not _removable(path):
                raise UsageError(
                    f"refusing to move {path.absolute()}: not a result directory under results/ "
                    "(copy-results sends it and keeps it)"
                )
            chosen.append(path.absolute())
        return chosen
    if not base.is_dir():
        return []
    found = []
    for path in sorted(base.iterdir()):
        if not path.is_dir() or path.is_symlink() or not (path / "metadata.json").is_file():
            continue
        if _status(path) == "running" or (
            skip_copied_to is not None and skip_copied_to in _copied_to(path)
        ):
            continue
        found.append(path)
    return found


def _status(result_dir: Path) -> str:
    try:
        meta = json.loads((result_dir / "metadata.json").read_text())
        return str(meta.get("run", {}).get("status", ""))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {result_dir / 'metadata.json'}: {exc}") from exc


def _members(result_dir: Path) -> Iterator[Path]:
    """Every path under the result directory, the metadata files first."""
    first = [result_dir / n for n in FIRST if (result_dir / n).is_file()]
    yield from first
    for path in sorted(result_dir.rglob("*")):
        if path not in first:
            yield path


def pack(result_dir: Path, target: Path) -> tuple[str, int]:
    """``<name>/...`` as a ``.tar.xz`` compressed by ``xz -T0``; returns (MD5, size).

    The MD5 is computed as the compressed stream is written, so the tarball
    is read from disk only once more: by the upload.  Any failure (a full
    disk, an unreadable file) is an :class:`UploadError` naming the result;
    when writing fails, ``xz`` is stopped and its output drained, so that
    nothing waits on a pipe.
    """
    if shutil.which("xz") is None:
        raise UsageError("the program 'xz' is missing: install the Debian package 'xz-utils'")
    errors: list[OSError] = []
    adding: Path | None = None
    try:
        with open(target, "wb") as out:
            hashed = HashingWriter(out)
            # spawned and waited for in this thread (its parent-death signal follows it);
            # its stderr is ours, as before
            xz = procs.spawn(
                ["xz", "-T0", "-c", "-6"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,
            )
            assert xz.stdin is not None and xz.stdout is not None

            def copy_out(source: IO[bytes]) -> None:
                while chunk := source.read(1 << 20):
                    if errors:
                        continue  # keep draining: xz must never block on a full pipe
                    try:
                        hashed.write(chunk)
                        out.flush()
                    except OSError as exc:  # the disk is full, say
                        errors.append(exc)
                        xz.kill()  # the tar writer then sees a broken pipe

            writer = threading.Thread(target=copy_out, args=(xz.stdout,), daemon=True)
            writer.start()
            try:
                with tarfile.open(fileobj=xz.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    for adding in _members(result_dir):
                        arcname = f"{result_dir.name}/{adding.relative_to(result_dir)}"
                        tar.add(adding, arcname=arcname, recursive=False)
                    adding = None
            except BrokenPipeError as exc:
                errors.append(exc)
            except OSError as exc:  # a file of the result cannot be read
                xz.kill()
                errors.insert(0, exc)
            finally:
                with contextlib.suppress(OSError):
                    xz.stdin.close()
                status = _wait(xz)
                writer.join(XZ_DEADLINE)
    except OSError as exc:  # the target cannot be opened or closed
        errors.insert(0, exc)
        status = 0
    if status != 0 or errors:
        why = _first_cause(errors) if errors else f"xz exited with status {status}"
        what = f" (at {adding})" if adding is not None else ""
        raise UploadError(
            f"cannot make the tarball of {result_dir} in {target.parent}{what}: {why}; "
            "the result is kept: free some space (or fix the file) and send it again"
        )
    return hashed.md5.hexdigest(), hashed.size


def _first_cause(errors: list[OSError]) -> OSError:
    """The error that made the others (a broken pipe only follows another failure)."""
    return next((e for e in errors if not isinstance(e, BrokenPipeError)), errors[0])


def _wait(proc: subprocess.Popen[bytes]) -> int:
    """xz's exit status; past the deadline it is killed (and the status is not 0)."""
    try:
        return proc.wait(XZ_DEADLINE)
    except subprocess.TimeoutExpired:
        status = procs.stop(proc, sig=signal.SIGKILL)
        return -signal.SIGKILL if status is None else status


def upload(
    settings: ServerSettings,
    tarball: Path,
    md5: str,
    *,
    public: bool = False,
    timeout: float = 3600.0,
) -> dict[str, Any]:
    """PUT the tarball; returns the server's answer once it has confirmed the MD5."""
    from pbench_runner import upload as put

    url = f"{settings.url}/api/v1/upload/{tarball.name}"
    if public:
        url += "?access=public"
    http = put.session(
        retries=5, backoff_max=10.0, statuses=RETRY_STATUSES, backoff_factor=0.5, resends=2
    )
    size = tarball.stat().st_size
    try:
        with _progress_bar(tarball.name, size) as report:
            resp = put.put_tarball(
                url,
                tarball,
                md5,
                settings.token,
                timeout=timeout,
                http=http,
                content_type="application/x-xz",
                progress=report,
            )
    except TransferError as exc:
        raise UploadError(f"{tarball.name}: {exc}") from exc
    finally:
        http.close()
    try:
        answer: dict[str, Any] = resp.json()
    except ValueError as exc:
        raise UploadError(f"{url}: the answer is not JSON: {resp.text[:200]!r}") from exc
    if answer.get("id") != md5:
        raise UploadError(
            f"{url}: the server did not confirm the MD5 (sent {md5}, got {answer.get('id')!r})"
        )
    return answer


class _progress_bar:
    """A rich progress bar on stderr for a large upload; nothing for a small one."""

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size
        self.progress: Any = None

    def __enter__(self) -> Any:
        if self.size < PROGRESS_MIN_BYTES:
            return None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.progress.start()
        task = self.progress.add_task(self.name, total=self.size)
        return lambda done: self.progress.update(task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _removable(result_dir: Path) -> bool:
    """A result directory under a ``results/`` directory: the only kind moving deletes."""
    path = result_dir.absolute()
    return path.parent.name == "results" and (path / "metadata.json").is_file()


def remove_result(result_dir: Path) -> None:
    """Delete a result directory that the server holds now (never anything else)."""
    path = result_dir.absolute()
    if not _removable(path):
        raise UsageError(f"refusing to delete {path}: not a result directory under results/")
    shutil.rmtree(path)
    copied_marker(path).unlink(missing_ok=True)


def send_results(
    run_dir: Path,
    names: list[str],
    settings: ServerSettings,
    *,
    keep: bool,
    public: bool = False,
    out: IO[str] = sys.stdout,
) -> list[str]:
    """Send results; returns a message per result that failed (the others are done)."""
    chosen = finished_results(
        run_dir, names, skip_copied_to=settings.url if keep else None, moving=not keep
    )
    if not chosen:
        print(f"nothing to send: no finished result under {run_dir / 'results'}", file=out)
        return []
    staging = run_dir / "results"
    remove_stale_staging(staging)
    failures = []
    for result_dir in chosen:
        try:
            md5, size, answer = _send(result_dir, staging, settings, public)
        except UploadError as exc:
            failures.append(str(exc))
            continue
        where = f"{settings.url}{answer.get('location', '')}"
        if keep:
            mark_copied(result_dir, settings.url, md5, where)
        else:
            remove_result(result_dir)
        verb = "copied" if keep else "moved"
        state = "already there" if answer.get("status") == 200 else "uploaded"
        print(f"{verb} {result_dir.name} ({size} bytes, MD5 {md5}, {state}): {where}", file=out)
    return failures


def _send(
    result_dir: Path, staging: Path, settings: ServerSettings, public: bool
) -> tuple[str, int, dict[str, Any]]:
    """Pack and upload one result; every failure is an :class:`UploadError` naming it."""
    try:
        with tempfile.TemporaryDirectory(
            prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=staging
        ) as tmp:
            tarball = Path(tmp) / f"{result_dir.name}.tar.xz"
            md5, size = pack(result_dir, tarball)
            return md5, size, upload(settings, tarball, md5, public=public)
    except OSError as exc:
        raise UploadError(
            f"{result_dir.name}: cannot stage its tarball in {staging}: {exc}; "
            "the result is kept: send it again once this is fixed"
        ) from exc


def remove_stale_staging(staging: Path) -> list[Path]:
    """Remove the ``.upload-<pid>-*`` folders of clients that are no longer running."""
    removed = []
    for entry in sorted(staging.glob(f"{STAGING_PREFIX}*")):
        pid_text = entry.name[len(STAGING_PREFIX) :].partition("-")[0]
        if entry.is_symlink() or not entry.is_dir() or not pid_text.isdigit():
            continue
        if procs.pid_alive(int(pid_text)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def mark_copied(result_dir: Path, server: str, md5: str, location: str) -> None:
    """Record beside the result that ``server`` holds it (beside any other servers)."""
    servers = sorted({*_copied_to(result_dir), server})
    copied_marker(result_dir).write_text(
        json.dumps({"server": server, "md5": md5, "location": location, "servers": servers}) + "\n"
    )


def _copied_to(result_dir: Path) -> list[str]:
    """The servers a copy of the result went to, from its marker."""
    try:
        marker = json.loads(copied_marker(result_dir).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(marker, dict):
        return []
    servers = marker.get("servers") or [marker.get("server")]
    return [str(s) for s in servers if s]
