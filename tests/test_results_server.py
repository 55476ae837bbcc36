"""The results server's API over real HTTP, the server running as its own process."""

from __future__ import annotations

import contextlib
import io
import json
import lzma
import os
import socket
import sqlite3
import subprocess
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pbench_runner import compare, compare_report, procs
from tests.results_helpers import (
    ResultsServer,
    make_result,
    results_md5,
    results_server,
    tarball_of,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResultsServer]:
    with results_server(tmp_path_factory.mktemp("srv")) as srv:
        yield srv


@pytest.fixture(scope="module")
def alice(server: ResultsServer) -> str:
    return server.token("alice")


@pytest.fixture(scope="module")
def bob(server: ResultsServer) -> str:
    return server.token("bob")


def _result(tmp_path: Path, name: str, **kw: object) -> Path:
    return tarball_of(make_result(tmp_path / "results", name, **kw), tmp_path)  # type: ignore[arg-type]


def _xz_tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with lzma.open(path, "wb") as raw, tarfile.open(fileobj=raw, mode="w|") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def _names(server: ResultsServer, token: str | None = None, **params: str) -> list[str]:
    resp = server.get("/api/v1/datasets", token, **params)
    assert resp.status_code == 200, resp.text
    return [d["name"] for d in resp.json()["datasets"]]


def _nothing_left(server: ResultsServer, name: str, token: str) -> None:
    assert server.leftovers() == []
    assert name not in _names(server, token)
    assert not list((server.data_dir / "datasets").rglob(f"{name}*"))


def test_upload_answers_201_with_id_and_location_then_200_for_the_same_tarball(
    server: ResultsServer, alice: str, tmp_path: Path
) -> None:
    tarball = _result(tmp_path, "run-201")
    md5 = results_md5(tarball)
    first = server.put(tarball, alice)
    assert first.status_code == 201, first.text
    assert first.json()["id"] == md5
    assert first.headers["Location"] == f"/api/v1/datasets/{md5}"
    again = server.put(tarball, alice)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == md5
    one = server.get(f"/api/v1/datasets/{md5}", alice).json()
    assert one["name"] == "run-201"
    assert one["owner"] == "alice"
    assert one["controller"] == "ctl1"
    assert one["hosts"] == ["node1"] and one["tools"] == ["vmstat"]
    (it,) = one["iterations"]
    assert it["metrics"]["wall_s"]["summary"]["mean"] == pytest.approx(1.0)
    assert it["hosts"]["node1"]["cpu_busy_pct"]["peak"] == pytest.approx(36.0)
    assert server.leftovers() == []


def test_upload_without_a_valid_token_gets_401(server: ResultsServer, tmp_path: Path) -> None:
    tarball = _result(tmp_path, "run-401")
    assert server.put(tarball, None).status_code == 401
    resp = server.put(tarball, "not-a-token")
    assert resp.status_code == 401
    assert "token" in resp.json()["message"]
    assert server.leftovers() == []


def test_md5_mismatch_gets_400_and_leaves_nothing(
    server: ResultsServer, alice: str, tmp_path: Path
) -> None:
    tarball = _result(tmp_path, "run-badmd5")
    resp = server.put(tarball, alice, md5="0" * 32)
    assert resp.status_code == 400
    assert "MD5 mismatch" in resp.json()["message"]
    _nothing_left(server, "run-badmd5", alice)


@pytest.mark.parametrize(
    "name",
    ["..%2F..%2Fetc%2Fevil.tar.xz", ".hidden.tar.xz", "a%20b.tar.xz", "run.tar.gz", "..x.tar.xz"],
)
def test_a_bad_name_gets_400(server: ResultsServer, alice: str, tmp_path: Path, name: str) -> None:
    tarball = _result(tmp_path, "run-name")
    resp = server.put(tarball, alice, name=name)
    assert resp.status_code == 400, resp.text
    assert "name" in resp.json()["message"] or "upload to" in resp.json()["message"]
    assert server.leftovers() == []
    assert not list(server.data_dir.parent.rglob("evil*"))


def test_a_tarball_that_is_not_a_result_gets_400(
    server: ResultsServer, alice: str, tmp_path: Path
) -> None:
    tarball = _result(tmp_path, "run-nometa", with_metadata=False)
    resp = server.put(tarball, alice)
    assert resp.status_code == 400
    assert "metadata.json is missing" in resp.json()["message"]
    garbage = tmp_path / "garbage.tar.xz"
    garbage.write_bytes(b"this is not xz at all")
    resp = server.put(garbage, alice)
    assert resp.status_code == 400
    assert "not a readable" in resp.json()["message"]
    _nothing_left(server, "run-nometa", alice)


@pytest.mark.parametrize(
    ("members", "links"),
    [
        ({"evil/metadata.json": b"{}", "evil/../../escaped.txt": b"x"}, {}),
        ({"evil/metadata.json": b"{}", "/abs/escaped.txt": b"x"}, {}),
        ({"evil/metadata.json": b"{}"}, {"evil/link": "../../../../etc/passwd"}),
        ({"evil/metadata.json": b"{}", "other/file": b"x"}, {}),
        ({"evil/metadata.json": b"{}", "evil/sub/../result.json": b"{}"}, {}),
    ],
    ids=["dotdot", "absolute", "symlink-out", "outside-its-directory", "dotdot-inside"],
)
def test_path_traversal_inside_the_tarball_is_refused(
    server: ResultsServer,
    alice: str,
    tmp_path: Path,
    members: dict[str, bytes],
    links: dict[str, str],
) -> None:
    tarball = _xz_tar(tmp_path / "evil.tar.xz", members, links)
    resp = server.put(tarball, alice)
    assert resp.status_code == 400, resp.text
    msg = resp.json()["message"]
    assert "refused" in msg or "not inside the directory" in msg
    _nothing_left(server, "evil", alice)
    assert not list(server.data_dir.parent.rglob("escaped*"))


def test_a_name_being_uploaded_gets_409_and_an_interrupted_upload_leaves_nothing(
    server: ResultsServer, alice: str, tmp_path: Path
) -> None:
    tarball = _result(tmp_path, "run-409")
    body = tarball.read_bytes()
    host, port = urllib.parse.urlsplit(server.url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            f"PUT /api/v1/upload/run-409.tar.xz HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {alice}\r\nContent-MD5: {results_md5(tarball)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[: len(body) // 2])
        assert procs.wait_until(lambda: server.leftovers(), 10), "the upload never started"
        second = server.put(tarball, alice)
        assert second.status_code == 409
        assert "being uploaded" in second.json()["message"]
    # the first client went away half way: nothing of it may remain
    assert procs.wait_until(lambda: not server.leftovers(), 10), server.leftovers()
    _nothing_left(server, "run-409", alice)
    assert server.put(tarball, alice).status_code == 201


def test_the_same_name_with_other_contents_gets_409(
    server: ResultsServer, alice: str, tmp_path: Path
) -> None:
    assert server.put(_result(tmp_path / "a", "run-twice"), alice).status_code == 201
    other = _result(tmp_path / "b", "run-twice", durations=(5.0,))
    resp = server.put(other, alice)
    assert resp.status_code == 409
    assert "exists already" in resp.json()["message"]


def test_two_concurrent_uploads_of_different_runs_both_land(
    server: ResultsServer, alice: str, tmp_path: Path
) -> None:
    tarballs = [_result(tmp_path, f"run-concurrent-{n}") for n in (1, 2)]
    statuses: dict[str, int] = {}

    def send(path: Path) -> None:
        statuses[path.name] = server.put(path, alice).status_code

    threads = [threading.Thread(target=send, args=(t,)) for t in tarballs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses.values()) == [201, 201]
    names = _names(server, alice, q="concurrent")
    assert sorted(names) == ["run-concurrent-1", "run-concurrent-2"]


def test_private_runs_are_seen_by_their_owner_only_and_public_by_everyone(
    server: ResultsServer, alice: str, bob: str, tmp_path: Path
) -> None:
    private = _result(tmp_path, "run-private")
    public = _result(tmp_path, "run-public")
    assert server.put(private, alice).status_code == 201
    assert server.put(public, alice, access="public").status_code == 201
    assert server.put(_result(tmp_path, "run-x"), alice, access="everyone").status_code == 400
    assert {"run-private", "run-public"} <= set(_names(server, alice))
    for viewer in (bob, None):
        seen = _names(server, viewer)
        assert "run-public" in seen and "run-private" not in seen
    md5 = results_md5(private)
    assert server.get(f"/api/v1/datasets/{md5}", bob).status_code == 404
    assert server.get(f"/api/v1/datasets/{md5}").status_code == 404
    assert server.get(f"/run/{md5}").status_code == 404
    assert server.get(f"/api/v1/datasets/{md5}/tarball", bob).status_code == 404
    assert server.get(f"/api/v1/datasets/{md5}", alice).status_code == 200
    assert server.get(f"/run/{results_md5(public)}").status_code == 200


def test_listing_filters_by_user_benchmark_config_date_and_text(
    server: ResultsServer, alice: str, bob: str, tmp_path: Path
) -> None:
    made = {
        "flt-a": dict(config="small", date="2026-01-05T10:00:00", script="pbench-run"),
        "flt-b": dict(config="large", date="2026-02-05T10:00:00"),
        "flt-c": dict(config="large", date="2026-03-05T10:00:00", host="dbhost"),
    }
    for name, kw in made.items():
        token = bob if name == "flt-c" else alice
        assert server.put(_result(tmp_path, name, **kw), token, access="public").status_code == 201
    assert sorted(_names(server, q="flt")) == ["flt-a", "flt-b", "flt-c"]
    assert _names(server, q="flt", user="bob") == ["flt-c"]
    assert _names(server, q="flt", benchmark="pbench-run") == ["flt-a"]
    assert sorted(_names(server, q="flt", config="large")) == ["flt-b", "flt-c"]
    assert _names(server, q="flt", since="2026-02-01", until="2026-02-28") == ["flt-b"]
    assert _names(server, q="flt dbhost") == ["flt-c"]
    assert _names(server, q="flt", controller="ctl1", limit="1") == ["flt-c"]  # newest first
    assert server.get("/api/v1/datasets", limit="0").status_code == 400


def test_files_are_listed_and_fetched_and_the_tarball_downloads_intact(
    server: ResultsServer, alice: str, tmp_path: Path
) -> None:
    result_dir = make_result(tmp_path / "results", "run-files")
    tarball = tarball_of(result_dir, tmp_path)
    md5 = server.put(tarball, alice).json()["id"]
    files = server.get(f"/api/v1/datasets/{md5}/files", alice).json()["files"]
    paths = {f["path"] for f in files}
    assert "metadata.json" in paths
    assert "1-default/sample2/tools-default/node1/vmstat/vmstat.csv" in paths
    got = server.get(
        f"/api/v1/datasets/{md5}/files/1-default/sample2/tools-default/node1/vmstat/vmstat.csv",
        alice,
    )
    assert got.status_code == 200
    assert (
        got.content
        == (result_dir / "1-default/sample2/tools-default/node1/vmstat/vmstat.csv").read_bytes()
    )
    assert (
        server.get(f"/api/v1/datasets/{md5}/files/..%2F..%2Fetc%2Fpasswd", alice).status_code == 404
    )
    download = server.get(f"/api/v1/datasets/{md5}/tarball", alice)
    assert download.status_code == 200
    assert download.content == tarball.read_bytes()
    assert download.headers["Content-MD5"] == md5


def test_only_the_owner_deletes_a_dataset(
    server: ResultsServer, alice: str, bob: str, tmp_path: Path
) -> None:
    md5 = server.put(_result(tmp_path, "run-delete"), alice, access="public").json()["id"]
    url = f"{server.url}/api/v1/datasets/{md5}"
    assert requests.delete(url, timeout=10).status_code == 401
    assert (
        requests.delete(url, headers={"Authorization": f"Bearer {bob}"}, timeout=10).status_code
        == 403
    )
    assert server.get(f"/api/v1/datasets/{md5}").status_code == 200
    gone = requests.delete(url, headers={"Authorization": f"Bearer {alice}"}, timeout=10)
    assert gone.status_code == 200
    assert server.get(f"/api/v1/datasets/{md5}", alice).status_code == 404
    assert not (server.data_dir / "datasets" / md5).exists()


def test_compare_answers_the_table_of_pbench_compare(
    server: ResultsServer, alice: str, tmp_path: Path
) -> None:
    base = make_result(tmp_path / "results", "cmp-base", durations=(1.0, 1.02, 0.98))
    slow = make_result(tmp_path / "results", "cmp-slow", durations=(2.0, 2.02, 1.98))
    ids = [server.put(tarball_of(d, tmp_path), alice).json()["id"] for d in (base, slow)]
    resp = server.get("/api/v1/compare", alice, ids=",".join(ids))
    assert resp.status_code == 200, resp.text
    (found,) = resp.json()["comparisons"]
    duration = next(ch for ch in found["changes"] if ch["metric"] == "wall_s")
    assert duration["pct"] == pytest.approx(100.0)
    assert duration["significant"] is True
    assert duration["verdict"] == "worse"  # twice as long
    # the table of `pbench compare`: a header, then a line per benchmark and metric
    header, *lines = found["table"]
    assert header.split() == ["benchmark", "metric", "base", "new", "change", "noise"]
    assert len(lines) == len(found["changes"])
    (line,) = [line for line in lines if " wall_s " in line]
    assert line.split()[1:] == ["wall_s", "1", "2", "+100.0%", "worse"]
    assert server.get("/api/v1/compare", alice, ids=ids[0]).status_code == 400


def test_the_verdict_follows_the_means_even_from_a_mean_of_zero() -> None:
    # from a mean of 0 the change is infinite whichever way it goes: the table, the API
    # and the page must all take the direction from the means
    def run(values: list[float]) -> dict[str, object]:
        metric = {"unit": "", "higher_is_better": True, "values": values}
        return {"iterations": [{"nodeid": "b::x", "metrics": {"score": metric}}]}

    (drop,) = compare.changes(run([0.0, 0.0]), run([-1.0, -1.0]))
    assert drop.significant and drop.higher_is_better
    assert compare.verdict(drop) == "worse"
    assert compare_report.table([drop])[1].endswith("n/a  worse")
    (rise,) = compare.changes(run([0.0, 0.0]), run([1.0, 1.0]))
    assert compare.verdict(rise) == "better"
    (same,) = compare.changes(run([1.0, 1.2]), run([1.1, 1.1]))
    assert compare.verdict(same) == "within noise"


def test_tokens_are_stored_hashed_and_the_last_line_is_the_token(
    server: ResultsServer, alice: str
) -> None:
    assert len(alice) >= 32 and " " not in alice
    assert alice.startswith("pbt_")  # never "-...": `--token VALUE` must not read as an option
    db = sqlite3.connect(server.data_dir / "index.sqlite")
    try:
        stored = [row[0] for row in db.execute("SELECT hash FROM tokens")]
    finally:
        db.close()
    assert alice not in stored
    assert all(len(h) == 64 for h in stored)


def test_over_the_size_limit_gets_413(tmp_path: Path) -> None:
    with results_server(tmp_path, "--max-size", "1K") as srv:
        token = srv.token("alice")
        tarball = _result(tmp_path, "run-big", durations=tuple(float(n) for n in range(1, 40)))
        assert tarball.stat().st_size > 1024
        resp = srv.put(tarball, token)
        assert resp.status_code == 413
        assert "at most 1024" in resp.json()["message"]
        assert srv.leftovers() == []


def test_when_the_disk_cannot_hold_it_gets_507(tmp_path: Path) -> None:
    with results_server(tmp_path, "--reserve", "1000000T") as srv:
        token = srv.token("alice")
        resp = srv.put(_result(tmp_path, "run-full"), token)
        assert resp.status_code == 507
        assert "not enough space" in resp.json()["message"]
        assert srv.leftovers() == []


def test_what_a_killed_server_left_of_an_upload_is_removed_at_start(tmp_path: Path) -> None:
    incoming = tmp_path / "server-data" / "incoming"
    (incoming / "staging-abc" / "run").mkdir(parents=True)
    (incoming / "tmp123.part").write_bytes(b"half a tarball")
    (incoming / "keep.txt").write_text("not ours")
    with results_server(tmp_path) as srv:
        assert sorted(p.name for p in incoming.iterdir()) == ["keep.txt"]
        assert "cut short" in srv.log.read_text()


def test_pcp_and_node_exporter_activity_is_plotted_beside_sysstat_data(
    server: ResultsServer, alice: str, tmp_path: Path
) -> None:
    result_dir = make_result(tmp_path / "results", "run-pcp", durations=(1.0,))
    pcp = result_dir / "1-default/sample1/tools-default/node1/pcp"
    pcp.mkdir()
    (pcp / "activity.csv").write_text(
        "timestamp,cpu_busy_pct,mem_used_mib,disk_kib_s,net_kib_s,load1\n"
        "2026-11-20T10:00:10+00:00,50,1000,10,5,0.1\n"
        "2026-11-20T10:00:11+00:00,60,1100,20,6,0.2\n"
    )
    shared = result_dir / "1-default/sample1/tools-default/prometheus"
    shared.mkdir()
    (shared / "x.csv").write_text("timestamp,a\n")
    md5 = server.put(tarball_of(result_dir, tmp_path), alice).json()["id"]
    series = server.get(f"/api/v1/datasets/{md5}/series", alice).json()
    assert set(series) == {"node1"}  # prometheus/ holds the group's data, not a host's
    node = series["node1"]
    assert [v for _, v in node["mem_used_mib"]] == [1000, 1100]  # from pcp
    assert len(node["cpu_busy_pct"]) == 5  # vmstat comes first
    (it,) = server.get(f"/api/v1/datasets/{md5}", alice).json()["iterations"]
    assert it["hosts"]["node1"]["mem_used_mib"]["peak"] == 1100


def _with_result_json(tmp_path: Path, name: str, iterations: list[object]) -> Path:
    result_dir = make_result(tmp_path / "results", name, durations=(1.0,))
    (result_dir / "result.json").write_text(json.dumps({"iterations": iterations}))
    return tarball_of(result_dir, tmp_path)


def _no_constants(text: str) -> object:
    def refuse(constant: str) -> object:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_another_users_private_dataset_is_refused_by_every_resource(
    server: ResultsServer, alice: str, bob: str, tmp_path: Path
) -> None:
    mine = server.put(_result(tmp_path, "run-bob-own", durations=(2.0,)), bob, access="public")
    md5 = server.put(_result(tmp_path, "run-alice-secret"), alice).json()["id"]
    for path in ("", "/series", "/files", "/files/metadata.json", "/tarball"):
        assert server.get(f"/api/v1/datasets/{md5}{path}", bob).status_code == 404, path
    compared = server.get("/api/v1/compare", bob, ids=f"{mine.json()['id']},{md5}")
    assert compared.status_code == 404
    assert "run-alice-secret" not in compared.text
    deleted = requests.delete(
        f"{server.url}/api/v1/datasets/{md5}",
        headers={"Authorization": f"Bearer {bob}"},
        timeout=30,
    )
    assert deleted.status_code == 404
    assert server.get(f"/api/v1/datasets/{md5}", alice).status_code == 200


def test_another_users_upload_of_a_private_tarball_gets_409_without_its_md5(
    server: ResultsServer, alice: str, bob: str, tmp_path: Path
) -> None:
    tarball = _result(tmp_path, "run-same-bytes")
    md5 = results_md5(tarball)
    assert server.put(tarball, alice).status_code == 201
    resp = server.put(tarball, bob)
    assert resp.status_code == 409, resp.text  # 200 would let bob's move-results delete his copy
    assert md5 not in resp.text and "private" in resp.json()["message"]
    other = _result(tmp_path / "b", "run-same-bytes", durations=(3.0,))
    taken = server.put(other, bob)
    assert taken.status_code == 409 and "exists already" in taken.json()["message"]
    assert md5 not in taken.text
    assert md5 in server.put(other, alice).json()["message"]  # the owner is told which
    # the owner makes it public with a re-upload; then bob may have it
    again = server.put(tarball, alice, access="public")
    assert again.status_code == 200 and "public now" in again.json()["message"]
    assert server.get(f"/api/v1/datasets/{md5}", bob).json()["access"] == "public"
    assert server.put(tarball, bob).status_code == 200


def test_malformed_metadata_gets_400_naming_what_is_wrong(
    server: ResultsServer, alice: str, tmp_path: Path
) -> None:
    cases = {
        "tools-not-object": (lambda m: m.update(tools="vmstat"), "'tools'"),
        "host-not-object": (lambda m: m["tools"]["hosts"].update(node1="x"), "'node1'"),
        "samples-not-list": (lambda m: m["iterations"][0].update(samples="x"), "samples"),
        "duration-a-string": (
            lambda m: m["iterations"][0]["samples"][0].update(wall_s="fast"),
            "wall_s",
        ),
    }
    for name, (spoil, said) in cases.items():
        result_dir = make_result(tmp_path / "results", f"run-bad-{name}")
        meta = json.loads((result_dir / "metadata.json").read_text())
        spoil(meta)
        (result_dir / "metadata.json").write_text(json.dumps(meta))
        resp = server.put(tarball_of(result_dir, tmp_path), alice)
        assert resp.status_code == 400, (name, resp.text)
        assert "metadata.json" in resp.json()["message"] and said in resp.json()["message"]
    assert server.leftovers() == []
    # a host that ran no tools is fine
    result_dir = make_result(tmp_path / "results", "run-host-without-tools")
    meta = json.loads((result_dir / "metadata.json").read_text())
    del meta["tools"]["hosts"]["node1"]["tools"]
    (result_dir / "metadata.json").write_text(json.dumps(meta))
    resp = server.put(tarball_of(result_dir, tmp_path), alice)
    assert resp.status_code == 201, resp.text
    assert server.get(f"/api/v1/datasets/{resp.json()['id']}", alice).json()["tools"] == []


def test_strings_where_numbers_belong_still_show_the_run_page_and_compare(
    server: ResultsServer, alice: str, tmp_path: Path
) -> None:
    odd = [
        {
            "name": "t",
            "nodeid": "t",
            "metrics": {"ops": {"values": ["x", 1.0], "summary": {"mean": "lots"}}, "bad": "y"},
            "hosts": {"node1": {"cpu_busy_pct": {"mean": "busy", "peak": 3}}, "node2": "z"},
        },
        "not an iteration",
    ]
    first = server.put(_with_result_json(tmp_path / "a", "run-odd-a", odd), alice)
    second = server.put(_with_result_json(tmp_path / "b", "run-odd-b", odd), alice)
    assert first.status_code == second.status_code == 201, first.text
    page = server.get(f"/run/{first.json()['id']}", alice)
    assert page.status_code == 200 and "run-odd-a" in page.text
    ids = f"{first.json()['id']},{second.json()['id']}"
    assert server.get("/api/v1/compare", alice, ids=ids).status_code == 200
    assert server.get("/compare", alice, ids=ids).status_code == 200


def test_a_change_from_a_mean_of_zero_is_valid_json(
    server: ResultsServer, alice: str, tmp_path: Path
) -> None:
    def its(value: float) -> list[object]:
        metric = {"unit": "op/s", "higher_is_better": True, "values": [value, value]}
        return [{"name": "b", "nodeid": "b", "metrics": {"ops": metric}}]

    base = server.put(_with_result_json(tmp_path / "a", "run-zero", its(0.0)), alice).json()["id"]
    new = server.put(_with_result_json(tmp_path / "b", "run-one", its(1.0)), alice).json()["id"]
    resp = server.get("/api/v1/compare", alice, ids=f"{base},{new}")
    assert resp.status_code == 200
    (comparison,) = _no_constants(resp.text)["comparisons"]  # type: ignore[index]
    (change,) = comparison["changes"]
    assert change["base"] == 0.0 and change["new"] == 1.0 and change["pct"] is None
    assert server.get("/compare", alice, ids=f"{base},{new}").status_code == 200


def test_odd_query_parameters_get_400_or_a_page_never_500(
    server: ResultsServer, alice: str
) -> None:
    huge = str(10**30)
    assert server.get("/api/v1/datasets", alice, offset=huge).status_code == 400
    assert server.get("/api/v1/datasets", alice, limit=huge).status_code == 400
    twice = server.get("/api/v1/datasets", alice, q=["a", "b"])
    assert twice.status_code == 400 and "once" in twice.text
    assert server.get("/", alice, page_no=huge).status_code == 200
    assert server.get("/", alice, q=["a", "b"], page_no=["1", "2"]).status_code == 200
    posted = requests.post(f"{server.url}/api/v1/datasets", timeout=30)
    assert posted.status_code == 405


def test_search_words_are_literal_not_like_wildcards(
    server: ResultsServer, alice: str, tmp_path: Path
) -> None:
    assert server.put(_result(tmp_path, "run-like_literal"), alice).status_code == 201
    assert server.put(_result(tmp_path, "run-likeXliteral"), alice).status_code == 201
    assert _names(server, alice, q="like_literal") == ["run-like_literal"]
    assert _names(server, alice, q="%") == []
    assert _names(server, alice, q="run-like%literal") == []


def _big_csv_result(tmp_path: Path, name: str, size: int) -> Path:
    """A result whose sar-cpu.csv is ``size`` bytes of distinct timestamps (compressible)."""
    result_dir = make_result(tmp_path / "results", name, durations=(1.0,))
    sar = result_dir / "1-default/sample1/tools-default/node1/sar"
    sar.mkdir()
    with open(sar / "sar-cpu.csv", "w") as fh:
        fh.write("timestamp,CPU,%idle\n")
        n = 0
        while fh.tell() < size:
            fh.write(f"2026-11-20T10:{n // 3600000:02d}:00.{n:09d}+00:00,all,{n % 100}\n")
            n += 1
    return tarball_of(result_dir, tmp_path)


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


def test_a_small_upload_that_unpacks_to_too_much_gets_413_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    with results_server(tmp_path, "--max-unpacked", "1M") as srv:
        token = srv.token("alice")
        tarball = _big_csv_result(tmp_path, "run-bomb", 3 << 20)
        assert tarball.stat().st_size < 1 << 20
        resp = srv.put(tarball, token)
        assert resp.status_code == 413, resp.text
        assert "run-bomb" in resp.json()["message"] and "unpack" in resp.json()["message"]
        _nothing_left(srv, "run-bomb", token)


def test_indexing_a_large_tool_csv_keeps_the_server_memory_flat(tmp_path: Path) -> None:
    tarball = _big_csv_result(tmp_path, "run-big-csv", 11 << 20)
    with results_server(tmp_path) as srv:
        token = srv.token("alice")
        srv.get("/api/v1/datasets", token)
        before = _peak_rss_kib(srv.proc.pid)
        resp = srv.put(tarball, token)
        assert resp.status_code == 201, resp.text
        grew_mib = (_peak_rss_kib(srv.proc.pid) - before) / 1024
        print(f"peak RSS grew by {grew_mib:.1f} MiB")
        assert grew_mib < 60, f"indexing an 11 MiB CSV took {grew_mib:.0f} MiB more"
        series = srv.get(f"/api/v1/datasets/{resp.json()['id']}/series", token).json()
        assert 100 < len(series["node1"]["cpu_busy_pct"]) <= 400


@contextlib.contextmanager
def _tmpfs(where: Path, *options: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``where`` (root only), unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)],
        check=True,
        timeout=30,
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True, timeout=30)


def test_a_full_disk_while_unpacking_gets_507_and_leaves_nothing(tmp_path: Path) -> None:
    result_dir = make_result(tmp_path / "results", "run-inodes", durations=(1.0,))
    for n in range(200):  # each a wanted file: more inodes than the data directory has
        host = result_dir / "sysinfo" / "beg" / f"host{n}"
        host.mkdir(parents=True)
        (host / "sysinfo.json").write_text("{}")
    tarball = tarball_of(result_dir, tmp_path)
    with (
        _tmpfs(tmp_path / "srv" / "server-data", "size=64m", "nr_inodes=100"),
        results_server(tmp_path / "srv", "--reserve", "0", "--max-unpacked", "1M") as srv,
    ):
        token = srv.token("alice")
        resp = srv.put(tarball, token)
        assert resp.status_code == 507, resp.text
        assert "run-inodes" in resp.json()["message"]
        _nothing_left(srv, "run-inodes", token)
