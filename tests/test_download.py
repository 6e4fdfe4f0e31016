"""Downloads through TS_DATA_MIRROR against a loopback HTTP server with injected faults.

The server serves zips built from the real files in ../shared/data at the real hosts' paths
(<mirror>/<host>/<path>), so data.py runs exactly the code a user runs against the real hosts.
"""
import errno
import functools
import hashlib
import io
import json
import os
import shutil
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import data

UCR_HOST = "timeseriesclassification.com/aeon-toolkit"


class Mirror:
    """Serves {path: bytes}; `faults[path]` is a list of faults consumed one per request."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.requests: list[tuple[str, dict]] = []
        self.changed: dict[str, bytes] = {}       # path -> the next version, for "truncate+change"
        self.release = threading.Event()          # ends stalled responses at teardown
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.split("?")[0].lstrip("/")
                mirror.requests.append((self.path, dict(self.headers)))
                fault = mirror.faults.get(path, []).pop(0) if mirror.faults.get(path) else ""
                fault = set(fault.split("+"))            # e.g. "truncate+noetag": both at once
                body = mirror.files.get(path)
                if "500" in fault:
                    return self._send(500, b"server error", "text/plain")
                if "html" in fault:
                    return self._send(200, b"<!DOCTYPE html><html><body>Please log in</body></html>", "text/html")
                if body is None:
                    return self._send(404, b"not found", "text/plain")
                start = 0
                rng = self.headers.get("Range")
                etag = '"%s"' % hashlib.sha1(body).hexdigest()        # strong validator of this version
                if "slow" in fault:
                    time.sleep(0.25)                  # under the 0.5 s read timeout
                # RFC 9110: a Range is honoured only if If-Range (when sent) names the current version
                if rng and rng.startswith("bytes=") and "norange" not in fault and \
                        (self.headers.get("If-Range") in (None, etag) or "ignoreifrange" in fault):
                    start = int(rng[6:].split("-")[0])
                said = max(start - 7, 0) if "badrange" in fault and start else start   # a Content-Range that lies
                part = body[said:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(part)))
                if "noetag" not in fault:
                    self.send_header("ETag", etag)
                if start:
                    self.send_header("Content-Range", f"bytes {said}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                if "truncate" in fault:                  # promise everything, send 40%, hang up
                    if "change" in fault:                # ... and the host publishes a new version meanwhile
                        mirror.files[path] = mirror.changed[path]
                    self.wfile.write(part[: len(part) * 2 // 5])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if "stall" in fault:                     # send a little, then go silent until teardown
                    self.wfile.write(part[:100])
                    self.wfile.flush()
                    mirror.release.wait(60)
                    self.close_connection = True
                    return
                self.wfile.write(part)

            def _send(self, code, body, ctype):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def _host_files(real_data: Path) -> dict:
    """The hosts' zips, built once per session from the real files shipped in tests/data."""
    gp = real_data / "ucr_uea/GunPoint"
    bm = real_data / "ucr_uea/BasicMotions"
    ep = real_data / "tfc/Epilepsy"          # the release's test.pt is 11,420 series: val.pt stands in
    # GunPoint: files at the zip's top level; BasicMotions: inside one folder (both occur on the host)
    return {f"{UCR_HOST}/GunPoint.zip": _zip({p.name: p.read_bytes() for p in gp.glob("*.ts")}),
            f"{UCR_HOST}/BasicMotions.zip": _zip({f"BasicMotions/{p.name}": p.read_bytes() for p in bm.glob("*.ts")}),
            "figshare.com/ndownloader/articles/19930199/versions/2": _zip(
                {"train.pt": (ep / "train.pt").read_bytes(), "val.pt": (ep / "val.pt").read_bytes(),
                 "test.pt": (ep / "val.pt").read_bytes()})}


@pytest.fixture
def mirror(monkeypatch, real_data, tmp_path):
    m = Mirror()
    m.files.update(_host_files(real_data))
    reg = "@problemName Covid3Month\n@timeStamps false\n@univariate true\n@targetlabel true\n@data\n"
    for split, rows in (("TRAIN", "1,2,3:0.5\n2,3,4:0.7\n3,4,5:0.1\n"), ("TEST", "1,1,1:0.2\n")):
        m.files[f"zenodo.org/records/18484843/files/Covid3Month_{split}.ts"] = (reg + rows).encode()
    monkeypatch.setenv("TS_DATA_MIRROR", m.url)
    monkeypatch.setattr(data, "BACKOFF", 0.0)
    monkeypatch.setattr(data, "TIMEOUT", (2.0, 0.5))
    m.cache = tmp_path / "cache"
    yield m
    m.close()


def _assert_clean(cache: Path):
    """No temporary or partial files anywhere in the cache."""
    leftovers = [p for p in cache.rglob("*") if p.name.endswith(".part") or ".extract." in p.name]
    assert leftovers == []


def test_download_verify_and_second_load_is_offline(mirror, real_data):
    ds = data.load_dataset("GunPoint", data_dir=mirror.cache, val_fraction=0)
    ref = data.load_dataset("GunPoint", data_dir=real_data, val_fraction=0)
    np.testing.assert_array_equal(ds.X_train, ref.X_train)
    np.testing.assert_array_equal(ds.y_test, ref.y_test)
    assert mirror.requests[0][0] == f"/{UCR_HOST}/GunPoint.zip"
    assert mirror.requests[0][1]["User-Agent"].startswith("timeseries-ssl/")
    manifest = data._read_manifest(mirror.cache)
    entry = manifest["ucr_uea/GunPoint/GunPoint.zip"]
    assert entry["sha256"] == data._sha256(mirror.cache / "ucr_uea/GunPoint/GunPoint.zip")
    assert entry["url"] == "https://timeseriesclassification.com/aeon-toolkit/GunPoint.zip"
    n = len(mirror.requests)
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert len(mirror.requests) == n                     # second load: no network access
    _assert_clean(mirror.cache)


def test_zip_with_one_folder_and_tfc_release(mirror, real_data):
    ds = data.load_dataset("BasicMotions", data_dir=mirror.cache)
    assert ds.X_train.shape[1:] == (6, 100) and ds.n_classes == 4
    g = data.load_dataset("TFC-Epilepsy", data_dir=mirror.cache)
    assert (len(g.X_train), len(g.X_val), len(g.X_test)) == (48, 12, 20)   # val.pt == test.pt here: carved
    assert (mirror.cache / "tfc/Epilepsy/train.pt").exists()


def test_tser_files_keep_query_string(mirror):
    ds = data.load_dataset("Covid3Month", data_dir=mirror.cache, val_fraction=0)
    assert ds.task == "regression" and ds.targets["train"].tolist() == [0.5, 0.7, 0.1]
    assert any(p.endswith("Covid3Month_TRAIN.ts?download=1") for p, _ in mirror.requests)


def test_truncated_body_is_resumed(mirror, real_data):
    mirror.faults[f"{UCR_HOST}/GunPoint.zip"] = ["truncate"]
    ds = data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert ds.X_test.shape == (150, 1, 150)
    assert len(mirror.requests) == 2 and mirror.requests[1][1].get("Range", "").startswith("bytes=")
    _assert_clean(mirror.cache)


def test_server_error_then_success(mirror):
    mirror.faults[f"{UCR_HOST}/GunPoint.zip"] = ["500", "500"]
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert len(mirror.requests) == 3
    assert "ucr_uea/GunPoint/GunPoint.zip" in data._read_manifest(mirror.cache)
    _assert_clean(mirror.cache)


def test_server_that_ignores_range_restarts_cleanly(mirror, real_data):
    mirror.faults[f"{UCR_HOST}/GunPoint.zip"] = ["truncate", "norange"]
    ds = data.load_dataset("GunPoint", data_dir=mirror.cache, val_fraction=0)
    ref = data.load_dataset("GunPoint", data_dir=real_data, val_fraction=0)
    np.testing.assert_array_equal(ds.X_train, ref.X_train)
    _assert_clean(mirror.cache)


def test_parallel_first_loads_download_once(mirror):
    """Seeds started together on a cold cache: one process downloads, the others wait and reuse it."""
    mirror.faults[f"{UCR_HOST}/GunPoint.zip"] = ["slow"]
    errors = []
    def load():
        try:
            data.load_dataset("GunPoint", data_dir=mirror.cache)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=load) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == [] and len(mirror.requests) == 1


def test_stalled_response_times_out_and_retries(mirror):
    mirror.faults[f"{UCR_HOST}/GunPoint.zip"] = ["stall"]
    t = time.time()
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert time.time() - t < 5 and len(mirror.requests) == 2     # the read timeout (0.5 s) ended the stall
    _assert_clean(mirror.cache)


def test_persistent_failure_leaves_nothing_and_says_where_to_put_the_file(mirror):
    mirror.faults[f"{UCR_HOST}/GunPoint.zip"] = ["500"] * data.RETRIES
    with pytest.raises(data.DownloadError) as e:
        data.load_dataset("GunPoint", data_dir=mirror.cache)
    msg = str(e.value)
    assert f"{mirror.url}/{UCR_HOST}/GunPoint.zip" in msg
    assert str(mirror.cache / "ucr_uea" / "GunPoint" / "GunPoint.zip") in msg
    assert not (mirror.cache / "ucr_uea/GunPoint/GunPoint.zip").exists()
    _assert_clean(mirror.cache)


def test_corrupt_compressed_data_is_removed_and_reported(mirror):
    good = bytearray(mirror.files[f"{UCR_HOST}/GunPoint.zip"])
    good[100:102] = bytes([good[100] ^ 0xFF, good[101] ^ 0xFF])      # inside the first member's data
    mirror.files[f"{UCR_HOST}/GunPoint.zip"] = bytes(good)
    with pytest.raises(data.DownloadError, match="not a valid zip|CRC"):
        data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert not list(mirror.cache.rglob("*.zip")) and not list(mirror.cache.rglob("*.ts"))
    _assert_clean(mirror.cache)


def test_corrupt_zip_is_removed_and_reported(mirror):
    good = mirror.files[f"{UCR_HOST}/GunPoint.zip"]
    mirror.files[f"{UCR_HOST}/GunPoint.zip"] = good[:200] + bytes(len(good) - 200)
    with pytest.raises(data.DownloadError, match="not a valid zip|CRC"):
        data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert not (mirror.cache / "ucr_uea/GunPoint/GunPoint.zip").exists()
    assert "ucr_uea/GunPoint/GunPoint.zip" not in data._read_manifest(mirror.cache)
    _assert_clean(mirror.cache)


def test_zip_with_parent_path_is_refused(mirror, real_data):
    mirror.files[f"{UCR_HOST}/GunPoint.zip"] = _zip({
        "../evil.ts": b"x", "GunPoint_TRAIN.ts": b"@data\n1,2:1\n", "GunPoint_TEST.ts": b"@data\n1,2:1\n"})
    with pytest.raises(data.DownloadError, match="unsafe path"):
        data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert not list(mirror.cache.rglob("*.ts")) and not (mirror.cache / "ucr_uea/evil.ts").exists()
    assert not (mirror.cache / "ucr_uea/GunPoint/GunPoint.zip").exists()
    assert data._read_manifest(mirror.cache) == {}
    _assert_clean(mirror.cache)


def test_html_page_with_status_200_is_refused(mirror):
    mirror.faults[f"{UCR_HOST}/GunPoint.zip"] = ["html"] * data.RETRIES
    with pytest.raises(data.DownloadError, match="HTML page"):
        data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert not list(mirror.cache.rglob("*.zip"))
    _assert_clean(mirror.cache)


def test_tser_html_page_is_refused(mirror):
    path = "zenodo.org/records/18484843/files/Covid3Month_TRAIN.ts"
    mirror.files[path] = b"<!-- maintenance -->\n<html><body>down for maintenance</body></html>"
    with pytest.raises(data.DownloadError, match="HTML page"):
        data.load_dataset("Covid3Month", data_dir=mirror.cache)
    assert not list(mirror.cache.rglob("*.ts")) and data._read_manifest(mirror.cache) == {}
    _assert_clean(mirror.cache)


def test_bad_file_placed_by_hand_is_reported_not_recorded(mirror, real_data):
    dest = mirror.cache / "ucr_uea/GunPoint/GunPoint.zip"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"<!DOCTYPE html><html>sign in</html>")
    with pytest.raises(data.DownloadError, match="HTML page.*Replace"):
        data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert data._read_manifest(mirror.cache) == {}
    wrong = _zip({"GunPoint_TRAIN.ts": b"@data\n1,2:1\n"})               # a zip, but not the whole problem
    dest.write_bytes(wrong)
    with pytest.raises(data.DownloadError, match="has no.*GunPoint_TEST.ts.*Replace"):
        data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert dest.read_bytes() == wrong and data._read_manifest(mirror.cache) == {}    # reported, not deleted
    dest.write_bytes(mirror.files[f"{UCR_HOST}/GunPoint.zip"])         # the right file, placed by hand
    assert data.load_dataset("GunPoint", data_dir=mirror.cache).n_classes == 2
    assert mirror.requests == []


def test_mirror_without_scheme_fails_at_once(monkeypatch, tmp_path):
    monkeypatch.setenv("TS_DATA_MIRROR", "127.0.0.1:9")
    monkeypatch.setattr(data, "BACKOFF", 5.0)            # a retry would take seconds
    t = time.time()
    with pytest.raises(data.DownloadError, match="check TS_DATA_MIRROR"):
        data.load_dataset("Coffee", data_dir=tmp_path)
    assert time.time() - t < 2


def test_missing_file_is_not_retried(mirror):
    with pytest.raises(data.DownloadError, match="HTTP 404"):
        data.load_dataset("Coffee", data_dir=mirror.cache)
    assert len(mirror.requests) == 1


def test_changed_archive_fails_verification(mirror):
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    z = mirror.cache / "ucr_uea/GunPoint/GunPoint.zip"
    z.write_bytes(z.read_bytes() + b"tampered")
    with pytest.raises(data.DownloadError, match="changed since it was downloaded"):
        data.load_dataset("GunPoint", data_dir=mirror.cache)


def test_zip_placed_by_hand_is_used_offline(monkeypatch, tmp_path, real_data):
    """No network, no mirror: a zip saved where the error message says is extracted and recorded."""
    monkeypatch.setenv("TS_DATA_MIRROR", "http://127.0.0.1:9")          # nothing listens there
    monkeypatch.setattr(data, "BACKOFF", 0.0)
    monkeypatch.setattr(data, "TIMEOUT", (1.0, 1.0))
    cache = tmp_path / "hand"
    with pytest.raises(data.DownloadError, match="save it as"):
        data.load_dataset("BasicMotions", data_dir=cache)
    dest = cache / "ucr_uea/BasicMotions/BasicMotions.zip"
    dest.write_bytes(_zip({p.name: p.read_bytes() for p in (real_data / "ucr_uea/BasicMotions").glob("*.ts")}))
    ds = data.load_dataset("BasicMotions", data_dir=cache)
    assert ds.n_classes == 4
    assert data._read_manifest(cache)["ucr_uea/BasicMotions/BasicMotions.zip"]["sha256"] == data._sha256(dest)


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TS_DATA_DIR", str(tmp_path / "x"))
    assert data.data_home() == tmp_path / "x"
    monkeypatch.delenv("TS_DATA_DIR")
    assert data.data_home() == Path.home() / ".cache" / "timeseries-ssl"
    monkeypatch.setenv("TS_DATA_MIRROR", "http://m.local/base/")
    assert data.mirrored("https://zenodo.org/records/1/files/a.ts?download=1") == \
        "http://m.local/base/zenodo.org/records/1/files/a.ts?download=1"


# --------------------------------------------------------------------------- issue 11: what the cache vouches for
GP = f"{UCR_HOST}/GunPoint.zip"
GP_ZIP = "ucr_uea/GunPoint/GunPoint.zip"


def _other_gunpoint(real_data) -> bytes:
    """Another valid GunPoint.zip: the same problem with one test series dropped (a host's new version)."""
    files = {p.name: p.read_bytes() for p in (real_data / "ucr_uea/GunPoint").glob("*.ts")}
    files["GunPoint_TEST.ts"] = files["GunPoint_TEST.ts"].rstrip(b"\n").rsplit(b"\n", 1)[0] + b"\n"
    return _zip(files)


def test_redownload_of_a_listed_archive_must_match_its_record(mirror, real_data):
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    first = data._read_manifest(mirror.cache)[GP_ZIP]
    folder = mirror.cache / "ucr_uea/GunPoint"
    for p in folder.iterdir():                           # the user deletes the files, not the manifest
        p.unlink()
    mirror.files[GP] = _other_gunpoint(real_data)      # ... and the host now serves another file
    with pytest.raises(data.DownloadError, match="different file than the one recorded") as e:
        data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert GP_ZIP in str(e.value) and str(mirror.cache / "manifest.json") in str(e.value)   # how to reset it
    assert not (folder / "GunPoint.zip").exists() and not list(folder.glob("*.ts"))
    assert data._read_manifest(mirror.cache)[GP_ZIP] == first
    _assert_clean(mirror.cache)
    # following the message: drop that one entry, and the new version is downloaded and recorded
    m = data._read_manifest(mirror.cache)
    del m[GP_ZIP]
    (mirror.cache / "manifest.json").write_text(json.dumps(m))
    assert len(data.load_dataset("GunPoint", data_dir=mirror.cache, val_fraction=0).X_test) == 149
    assert data._read_manifest(mirror.cache)[GP_ZIP]["sha256"] == hashlib.sha256(mirror.files[GP]).hexdigest()


def test_changed_archive_advice_does_not_loop(mirror):
    """'Delete the archive' must lead back to a working cache when the host still serves the recorded file."""
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    z = mirror.cache / GP_ZIP
    z.write_bytes(z.read_bytes() + b"tampered")
    with pytest.raises(data.DownloadError, match="changed since it was downloaded") as e:
        data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert f"Delete {z.parent}" in str(e.value)
    shutil.rmtree(z.parent)
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert z.read_bytes() == mirror.files[GP]


def test_part_left_by_a_killed_run_is_not_resumed(mirror):
    """A killed run leaves X.part; the host has since changed the file. Resuming would splice them."""
    path = "zenodo.org/records/18484843/files/Covid3Month_TRAIN.ts"
    head = "@problemName Covid3Month\n@timeStamps false\n@univariate true\n@targetlabel true\n@data\n"
    old = (head + "".join(f"{i},{i + 1},{i + 2}:0.{i}\n" for i in range(10))).encode()
    new = (head + "".join(f"{i},{i},{i}:0.{i}\n" for i in range(10))).encode()
    mirror.files[path] = new
    folder = mirror.cache / "tser/Covid3Month"
    folder.mkdir(parents=True)
    (folder / "Covid3Month_TRAIN.ts.part").write_bytes(old[: len(old) // 2])
    ds = data.load_dataset("Covid3Month", data_dir=mirror.cache, val_fraction=0)
    assert (folder / "Covid3Month_TRAIN.ts").read_bytes() == new
    assert len(ds.targets["train"]) + len(ds.X_val) == 10
    assert all("Range" not in h for _, h in mirror.requests)
    _assert_clean(mirror.cache)


def test_file_changed_on_the_host_between_attempts_is_sent_whole(mirror, real_data):
    """A cut-off transfer resumes with If-Range: when the host's file changed meanwhile, the whole new
    file comes back (200), never old bytes followed by new ones."""
    mirror.changed[GP] = _other_gunpoint(real_data)
    mirror.faults[GP] = ["truncate+change"]
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert (mirror.cache / GP_ZIP).read_bytes() == mirror.changed[GP]
    assert mirror.requests[1][1].get("If-Range") == mirror.requests[1][1].get("If-Range", "x") != "x"
    _assert_clean(mirror.cache)


def test_resumed_part_from_another_version_is_dropped(mirror, real_data):
    """A host that honours Range but ignores If-Range: the 206's ETag names another version, so
    its bytes must not be appended to the partial file."""
    mirror.changed[GP] = _other_gunpoint(real_data)
    mirror.faults[GP] = ["truncate+change", "ignoreifrange"]
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert (mirror.cache / GP_ZIP).read_bytes() == mirror.changed[GP]
    assert len(mirror.requests) == 3 and "Range" not in mirror.requests[2][1]


def test_resume_without_a_validator_starts_from_zero(mirror):
    """No ETag or Last-Modified: nothing proves the next response is the same file, so no Range."""
    mirror.faults[GP] = ["truncate+noetag", "noetag"]
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert len(mirror.requests) == 2 and "Range" not in mirror.requests[1][1]
    assert (mirror.cache / GP_ZIP).read_bytes() == mirror.files[GP]


def test_resume_answered_with_the_whole_file_is_byte_identical(mirror):
    """The host ignores Range and answers 200: the partial bytes must be dropped, not kept in front
    (zipfile tolerates junk before an archive, so only a byte comparison sees it)."""
    mirror.faults[GP] = ["truncate", "norange"]
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert (mirror.cache / GP_ZIP).read_bytes() == mirror.files[GP]
    assert data._read_manifest(mirror.cache)[GP_ZIP]["sha256"] == hashlib.sha256(mirror.files[GP]).hexdigest()


def test_content_range_that_starts_elsewhere_is_not_spliced(mirror):
    mirror.faults[GP] = ["truncate", "badrange"]
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert (mirror.cache / GP_ZIP).read_bytes() == mirror.files[GP]
    assert len(mirror.requests) == 3                     # the lying 206 is dropped; the next try is whole
    _assert_clean(mirror.cache)


def _fail_extraction(monkeypatch):
    """Renames of extracted files into the dataset folder fail as on a full disk."""
    real = os.replace
    def replace(src, dst):
        if ".extract." in str(src):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)
    monkeypatch.setattr(os, "replace", replace)


def test_disk_error_during_extraction_keeps_the_verified_archive(mirror, monkeypatch):
    with monkeypatch.context() as m:
        _fail_extraction(m)
        with pytest.raises(data.DownloadError, match="No space left"):
            data.load_dataset("GunPoint", data_dir=mirror.cache)
    z = mirror.cache / GP_ZIP
    assert z.read_bytes() == mirror.files[GP]
    assert data._read_manifest(mirror.cache)[GP_ZIP]["sha256"] == data._sha256(z)
    data.load_dataset("GunPoint", data_dir=mirror.cache)     # space freed: no second download
    assert len(mirror.requests) == 1
    # the same when a recorded archive is extracted again
    for p in z.parent.glob("*.ts"):
        p.unlink()
    with monkeypatch.context() as m:
        _fail_extraction(m)
        with pytest.raises(data.DownloadError, match="No space left"):
            data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert z.exists() and GP_ZIP in data._read_manifest(mirror.cache)
    _assert_clean(mirror.cache)


def test_part_file_is_not_followed_through_a_symlink(mirror, tmp_path):
    """In a shared cache another user can plant .part (or .lock) as a link to a file of yours."""
    victim = tmp_path / "my_thesis.txt"
    victim.write_bytes(b"years of work")
    folder = mirror.cache / "ucr_uea/GunPoint"
    folder.mkdir(parents=True)
    (folder / "GunPoint.zip.part").symlink_to(victim)
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert victim.read_bytes() == b"years of work"
    assert (folder / GP_ZIP.split("/")[-1]).read_bytes() == mirror.files[GP]


def test_lock_file_is_not_followed_through_a_symlink(mirror, tmp_path):
    victim = tmp_path / "my_thesis.txt"
    victim.write_bytes(b"years of work")
    (mirror.cache / "ucr_uea/BasicMotions").mkdir(parents=True)
    (mirror.cache / "ucr_uea/BasicMotions/.lock").symlink_to(victim)
    with pytest.raises(data.DownloadError, match="symbolic link"):
        data.load_dataset("BasicMotions", data_dir=mirror.cache)
    assert victim.read_bytes() == b"years of work"


def _write_everything(cache, out):
    import common
    import torch
    data.load_dataset("GunPoint", data_dir=cache)
    common.save_json({"a": 1}, out / "results.json")
    common.save_checkpoint(out / "model.pt", {"w": torch.zeros(2)})


def test_writes_are_flushed_to_disk_before_the_rename(mirror, monkeypatch, tmp_path):
    synced, order = set(), []
    real_fsync, real_replace = os.fsync, os.replace
    def fsync(fd):
        synced.add(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)
    def replace(src, dst):
        order.append((os.path.realpath(src) in synced, str(dst)))
        return real_replace(src, dst)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    _write_everything(mirror.cache, tmp_path)
    names = {Path(d).name for _, d in order}
    assert {"GunPoint.zip", "GunPoint_TRAIN.ts", "GunPoint_TEST.ts", "manifest.json", "results.json",
            "model.pt"} <= names
    assert all(flushed for flushed, _ in order), [d for f, d in order if not f]


@pytest.mark.parametrize("umask,mode", [(0o027, 0o640), (0o022, 0o644)])
def test_written_files_keep_the_users_umask(mirror, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        _write_everything(mirror.cache, tmp_path)
    finally:
        os.umask(old)
    for p in (mirror.cache / "manifest.json", tmp_path / "results.json", tmp_path / "model.pt",
              mirror.cache / GP_ZIP, mirror.cache / "ucr_uea/GunPoint/GunPoint_TEST.ts"):
        assert p.stat().st_mode & 0o777 == mode, p     # 0666 minus the umask, not mkstemp's 0600


def test_files_placed_by_hand_are_never_overwritten(mirror, real_data):
    folder = mirror.cache / "ucr_uea/GunPoint"
    folder.mkdir(parents=True)
    mine = (real_data / "ucr_uea/GunPoint/GunPoint_TRAIN.ts").read_bytes().replace(b"@data", b"# mine\n@data")
    (folder / "GunPoint_TRAIN.ts").write_bytes(mine)     # TRAIN by hand, TEST missing
    with pytest.raises(data.DownloadError, match="GunPoint_TRAIN.ts differs") as e:
        data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert "Nothing was overwritten" in str(e.value)
    assert (folder / "GunPoint_TRAIN.ts").read_bytes() == mine
    # the archive's own copy placed by hand is fine: only the missing file is added
    (folder / "GunPoint_TRAIN.ts").write_bytes((real_data / "ucr_uea/GunPoint/GunPoint_TRAIN.ts").read_bytes())
    assert data.load_dataset("GunPoint", data_dir=mirror.cache).n_classes == 2
    assert len(mirror.requests) == 1


def test_extracted_files_are_checked_against_the_zip_crc(mirror):
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    test_ts = mirror.cache / "ucr_uea/GunPoint/GunPoint_TEST.ts"
    good = test_ts.read_bytes()
    test_ts.write_bytes(good.replace(b"-0.6", b"-0.7", 1))            # same size, other values
    with pytest.raises(data.DownloadError, match="GunPoint_TEST.ts differs"):
        data.load_dataset("GunPoint", data_dir=mirror.cache)
    test_ts.unlink()                                                  # as the message says
    data.load_dataset("GunPoint", data_dir=mirror.cache)
    assert test_ts.read_bytes() == good and len(mirror.requests) == 1


def test_manifest_updates_from_parallel_loads_are_not_lost(mirror, monkeypatch):
    """Two datasets loaded at once both record their archive (the manifest's lock serialises the
    read-modify-write; reads are slowed so that without it both would read the same old manifest)."""
    real = data._read_manifest
    def slow(home):
        m = real(home)
        time.sleep(0.3)
        return m
    monkeypatch.setattr(data, "_read_manifest", slow)
    errors = []
    def load(name):
        try:
            data.load_dataset(name, data_dir=mirror.cache)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=load, args=(n,)) for n in ("GunPoint", "BasicMotions")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert set(real(mirror.cache)) == {GP_ZIP, "ucr_uea/BasicMotions/BasicMotions.zip"}
