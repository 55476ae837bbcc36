"""The Tool Data Sink over real HTTP with a real redis-server."""

from __future__ import annotations

import contextlib
import io
import socket
import tarfile
import threading
import time
from pathlib import Path

import requests

from pbench_runner import bus, procs, tarballs
from pbench_runner.upload import put_tarball

from .conftest import SinkHarness


def make_tarball(tmp_path: Path, name: str = "data.tar") -> tuple[Path, str]:
    src = tmp_path / "src"
    (src / "vmstat").mkdir(parents=True, exist_ok=True)
    (src / "vmstat" / "vmstat.csv").write_text("timestamp,us\n2026-01-01T00:00:00,5\n")
    target = tmp_path / name
    md5, _ = tarballs.pack(src, target)
    return target, md5


def raw_put(
    sink: SinkHarness,
    action_id: str,
    host: str,
    body: bytes,
    md5: str | None,
    token: str | None = None,
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or sink.token}"}
    if md5 is not None:
        headers["Content-MD5"] = md5
    return requests.put(
        f"{sink.url}/api/v1/data/{action_id}/{host}", data=body, headers=headers, timeout=10
    )


def wait_for_log(sink: SinkHarness, text: str, timeout: float = 10.0) -> None:
    """Wait until the sink's log holds ``text``."""
    assert procs.wait_until(lambda: text in sink.log.read_text(), timeout, 0.02), (
        f"{text!r} not in the sink's log:\n{procs.tail(sink.log, 30)}"
    )


def wait_until_collecting(sink: SinkHarness, act: bus.Action) -> None:
    """Wait until the sink has registered the upload of ``act`` (it logs the action then)."""
    wait_for_log(sink, f"action {act.action} {act.group} {act.directory}")


def test_put_before_send_gets_412_and_meister_retries(sink: SinkHarness, tmp_path: Path) -> None:
    tarball, md5 = make_tarball(tmp_path)
    sample = tmp_path / "sample1"
    outcome: dict[str, object] = {}

    def upload() -> None:
        try:
            outcome["resp"] = put_tarball(
                f"{sink.url}/api/v1/data/7-early/h1", tarball, md5, sink.token, timeout=10
            )
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=upload)
    thread.start()
    # the meister keeps getting 412 while the sink is not sending
    wait_for_log(sink, '"PUT /api/v1/data/7-early/h1 HTTP/1.1" 412')
    assert thread.is_alive()
    sink.publish("send", sample, action_id="7-early")
    thread.join(timeout=20)
    assert "error" not in outcome, outcome
    assert outcome["resp"].status_code == 201  # type: ignore[attr-defined]
    assert (
        (sample / "tools-default" / "h1" / "vmstat" / "vmstat.csv")
        .read_text()
        .startswith("timestamp")
    )
    log = sink.log.read_text()
    assert '"PUT /api/v1/data/7-early/h1 HTTP/1.1" 412' in log
    assert '"PUT /api/v1/data/7-early/h1 HTTP/1.1" 201' in log


def test_sink_answers_once_when_every_host_has_reported(sink: SinkHarness, tmp_path: Path) -> None:
    act = sink.publish("start", tmp_path / "s1")
    bus.publish_report(sink.client, sink.keys, bus.Report(act.id, "h1", "start", True))
    # a duplicate from h1 and a stale report for another action count for nothing
    bus.publish_report(sink.client, sink.keys, bus.Report(act.id, "h1", "start", True))
    bus.publish_report(sink.client, sink.keys, bus.Report("0-old", "h2", "start", True))
    time.sleep(0.3)
    assert not sink.client.exists(sink.keys.result(act.id))
    bus.publish_report(
        sink.client,
        sink.keys,
        bus.Report(act.id, "h2", "start", False, ["tool 'x' on host h2: boom"]),
    )
    result = sink.result(act.id)
    assert not result.ok
    assert result.hosts == {"h1": [], "h2": ["tool 'x' on host h2: boom"]}


def test_host_without_heartbeat_is_reported_lost(sink: SinkHarness, tmp_path: Path) -> None:
    sink.client.delete(sink.keys.alive("h2"))  # h2's meister died
    act = sink.publish("stop", tmp_path / "s1", timeout=30)
    began = time.monotonic()
    bus.publish_report(sink.client, sink.keys, bus.Report(act.id, "h1", "stop", True))
    result = sink.result(act.id, timeout=10)
    assert time.monotonic() - began < 5
    assert result.failures() == {
        "h2": [f"the tool meister stopped answering (no heartbeat for {bus.ALIVE_TTL} s)"]
    }


def test_deadline_names_hosts_that_did_not_answer(sink: SinkHarness, tmp_path: Path) -> None:
    act = sink.publish("start", tmp_path / "s1", timeout=1.0)
    bus.publish_report(sink.client, sink.keys, bus.Report(act.id, "h1", "start", True))
    result = sink.result(act.id, timeout=10)
    assert result.missing == ["h2"]
    assert not result.ok


def test_wrong_md5_is_rejected_and_nothing_written(sink: SinkHarness, tmp_path: Path) -> None:
    tarball, _md5 = make_tarball(tmp_path)
    sample = tmp_path / "s1"
    act = sink.publish("send", sample)
    wait_until_collecting(sink, act)
    resp = raw_put(sink, act.id, "h1", tarball.read_bytes(), "0" * 32)
    assert resp.status_code == 400
    assert "MD5 mismatch" in resp.json()["message"]
    assert not (sample / "tools-default" / "h1").exists()
    assert not list(sample.rglob("*.tar"))


class CorruptFirstBodyProxy:
    """A TCP proxy on loopback that flips one body byte of the first request only."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            corrupt = self.connections == 1
            threading.Thread(
                target=self._pipe, args=(client, upstream, corrupt), daemon=True
            ).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, corrupt: bool) -> None:
        seen = b""
        done = not corrupt
        try:
            while data := src.recv(65536):
                if not done:
                    seen += data
                    head_end = seen.find(b"\r\n\r\n")
                    if head_end >= 0 and len(seen) > head_end + 10:
                        i = head_end + 10
                        seen = seen[:i] + bytes([seen[i] ^ 0xFF]) + seen[i + 1 :]
                        data, done = seen, True
                    else:
                        continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop = True
        self.listener.close()


def test_corrupted_upload_is_resent_and_lands(sink: SinkHarness, tmp_path: Path) -> None:
    tarball, md5 = make_tarball(tmp_path)
    sample = tmp_path / "s1"
    act = sink.publish("send", sample)
    wait_until_collecting(sink, act)
    port = int(sink.url.rsplit(":", 1)[1])
    proxy = CorruptFirstBodyProxy(port)
    try:
        resp = put_tarball(
            f"http://127.0.0.1:{proxy.port}/api/v1/data/{act.id}/h1",
            tarball,
            md5,
            sink.token,
            timeout=10,
        )
    finally:
        proxy.close()
    assert resp.status_code == 201
    log = sink.log.read_text()
    assert f'"PUT /api/v1/data/{act.id}/h1 HTTP/1.1" 400' in log
    assert (sample / "tools-default" / "h1" / "vmstat" / "vmstat.csv").exists()


def _tar_with(member: tarfile.TarInfo, payload: bytes = b"evil") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ok = tarfile.TarInfo("vmstat/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        if member.isfile():
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
        else:
            tar.addfile(member)
    return buf.getvalue()


def test_unsafe_tarballs_are_refused_and_write_nothing(sink: SinkHarness, tmp_path: Path) -> None:
    import hashlib

    sample = tmp_path / "deep" / "s1"
    act = sink.publish("send", sample)
    wait_until_collecting(sink, act)
    cases = {
        "dotdot": tarfile.TarInfo("../../escaped.txt"),
        "absolute": tarfile.TarInfo(str(tmp_path / "absolute.txt")),
    }
    link = tarfile.TarInfo("vmstat/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    cases["symlink-out"] = link
    rel = tarfile.TarInfo("vmstat/rel")
    rel.type, rel.linkname = tarfile.SYMTYPE, "../../../../outside"
    cases["relative-symlink-out"] = rel
    dev = tarfile.TarInfo("vmstat/null")
    dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
    cases["device"] = dev
    for name, member in cases.items():
        body = _tar_with(member)
        resp = raw_put(sink, act.id, "h1", body, hashlib.md5(body).hexdigest())
        assert resp.status_code == 422, (name, resp.status_code, resp.text)
        assert "refused" in resp.json()["message"]
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "deep" / "escaped.txt").exists()
    assert not (tmp_path / "absolute.txt").exists()
    assert (
        not any((sample / "tools-default" / "h1").rglob("*"))
        if (sample / "tools-default" / "h1").exists()
        else True
    )


def test_put_needs_the_run_token_and_a_known_host(sink: SinkHarness, tmp_path: Path) -> None:
    tarball, md5 = make_tarball(tmp_path)
    act = sink.publish("send", tmp_path / "s1")
    wait_until_collecting(sink, act)
    body = tarball.read_bytes()
    assert raw_put(sink, act.id, "h1", body, md5, token="wrong").status_code == 401
    assert raw_put(sink, act.id, "intruder", body, md5).status_code == 404
    assert raw_put(sink, act.id, "h1", body, None).status_code == 428


def test_concurrent_puts_from_hosts_all_land(sink: SinkHarness, tmp_path: Path) -> None:
    tarball, md5 = make_tarball(tmp_path)
    sample = tmp_path / "s1"
    act = sink.publish("send", sample)
    codes: dict[str, int] = {}

    def put(host: str) -> None:
        codes[host] = put_tarball(
            f"{sink.url}/api/v1/data/{act.id}/{host}", tarball, md5, sink.token, timeout=10
        ).status_code

    threads = [threading.Thread(target=put, args=(h,)) for h in ("h1", "h2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert codes == {"h1": 201, "h2": 201}
    for host in ("h1", "h2"):
        assert (sample / "tools-default" / host / "vmstat" / "vmstat.csv").exists()


def test_a_report_lost_in_a_silent_resubscribe_is_still_counted(
    sink: SinkHarness, tmp_path: Path
) -> None:
    act = sink.publish("start", tmp_path / "s1", timeout=30)
    bus.publish_report(sink.client, sink.keys, bus.Report(act.id, "h1", "start", True))
    time.sleep(0.3)
    for client in sink.client.client_list():  # cut the sink off; redis-py reconnects by itself
        if client.get("name") == "tds":
            sink.client.client_kill_filter(_id=client["id"])
    # h2's report reaches the hash while the sink may not be subscribed
    bus.publish_report(sink.client, sink.keys, bus.Report(act.id, "h2", "start", True))
    began = time.monotonic()
    result = sink.result(act.id, timeout=10)
    assert result.ok, result
    assert time.monotonic() - began < 3


def test_the_same_host_sending_twice_at_once_never_mixes_the_uploads(
    sink: SinkHarness, tmp_path: Path
) -> None:
    src = tmp_path / "src" / "tool"
    src.mkdir(parents=True)
    for n in range(200):
        (src / f"f{n:03d}.txt").write_text(f"good {n}\n" * 200)
    tarball = tmp_path / "good.tar"
    md5, _ = tarballs.pack(tmp_path / "src", tarball)
    body = tarball.read_bytes()
    damaged = bytearray(body)
    damaged[len(damaged) // 2] ^= 0xFF
    sample = tmp_path / "s1"
    act = sink.publish("send", sample)
    wait_until_collecting(sink, act)
    codes: dict[str, int] = {}

    def put(name: str, data: bytes) -> None:
        codes[name] = raw_put(sink, act.id, "h1", data, md5).status_code

    threads = [
        threading.Thread(target=put, args=("good", body)),
        threading.Thread(target=put, args=("damaged", bytes(damaged))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert codes == {"good": 201, "damaged": 400}
    files = sorted((sample / "tools-default" / "h1" / "tool").iterdir())
    assert len(files) == 200
    assert all(f.read_text() == f"good {int(f.stem[1:])}\n" * 200 for f in files)
    assert not any((sample / ".incoming").rglob("*")) if (sample / ".incoming").exists() else True


def test_a_tarball_the_sink_cannot_write_gets_a_json_answer(
    sink: SinkHarness, tmp_path: Path
) -> None:
    import hashlib

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        first = tarfile.TarInfo("tool/f")
        first.size = 1
        tar.addfile(first, io.BytesIO(b"x"))
        second = tarfile.TarInfo("tool/f/g")  # f is a file: cannot be a directory too
        second.size = 1
        tar.addfile(second, io.BytesIO(b"y"))
    body = buf.getvalue()
    act = sink.publish("send", tmp_path / "s1")
    wait_until_collecting(sink, act)
    resp = raw_put(sink, act.id, "h1", body, hashlib.md5(body).hexdigest())
    assert resp.status_code == 500
    assert resp.headers["Content-Type"].startswith("application/json")
    assert "the sink cannot unpack host h1's data" in resp.json()["message"]
