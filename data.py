"""
Every dataset the four papers use, by name: download, cache, verify, parse, split.

    import data
    ds = data.load_dataset("GunPoint")       # or "BasicMotions", "SleepEEG", "path/to/my.npz", ...
    ds.X_train, ds.y_train                   # (N, C, L) float32 NaN-padded, (N,) int64 in 0..K-1
    ds.X_val, ds.y_val, ds.X_test, ds.y_test # validation carved from train when the release has none
    ds.len_train, ds.n_classes, ds.class_names

Families (names exactly as the archives spell them; `list_datasets()` lists them all):
  UCR   128 univariate problems      timeseriesclassification.com per-dataset zip of .ts files
  UEA    30 multivariate problems    same host and format
  TF-C    8 releases                 figshare zips of train.pt / val.pt / test.pt (SleepEEG, FD-A, ...)
          "Epilepsy" is the UEA problem; the TF-C release of that name is "TFC-Epilepsy".
  TSER   19 regression problems      Zenodo .ts files; AimTS pre-trains on them, targets are ignored
  raw recordings (HARTH, AFDB, Apnea-ECG, Sleep-EDF, PTB-XL, PAMAP2): separate issue, see RAW.

Where files live: `$TS_DATA_DIR`, else `~/.cache/timeseries-ssl`, laid out as
  <data_dir>/ucr_uea/<Name>/<Name>_TRAIN.ts, <Name>_TEST.ts   (+ <Name>.zip, the verified archive)
  <data_dir>/tfc/<Name>/train.pt, val.pt, test.pt              (+ <Name>.zip)
  <data_dir>/tser/<Name>/<Name>_TRAIN.ts, <Name>_TEST.ts
  <data_dir>/manifest.json   SHA-256 of every archive, recorded on first download, checked on each use
                             and against any later download of it; extracted files are checked
                             against the archive's CRC-32 on each use
Files put there by hand are used as they are and never overwritten. `TS_DATA_MIRROR=<base URL>` sends every download to
`<base>/<original host>/<original path>?<original query>` instead (offline mirrors, tests).
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from common import UserError, _atomic_write, _fsync_dir

USER_AGENT = "timeseries-ssl/0.1 (reference implementations of self-supervised time-series papers; python-requests)"
TIMEOUT = (15.0, 60.0)     # seconds: (connect, read between bytes)
RETRIES = 4                # attempts per URL
BACKOFF = 2.0              # seconds, doubled after each failed attempt

# --------------------------------------------------------------------------- registry
UCR = """ACSF1 Adiac AllGestureWiimoteX AllGestureWiimoteY AllGestureWiimoteZ ArrowHead Beef BeetleFly
BirdChicken BME Car CBF Chinatown ChlorineConcentration CinCECGTorso Coffee Computers CricketX CricketY
CricketZ Crop DiatomSizeReduction DistalPhalanxOutlineAgeGroup DistalPhalanxOutlineCorrect DistalPhalanxTW
DodgerLoopDay DodgerLoopGame DodgerLoopWeekend Earthquakes ECG200 ECG5000 ECGFiveDays ElectricDevices
EOGHorizontalSignal EOGVerticalSignal EthanolLevel FaceAll FaceFour FacesUCR FiftyWords Fish FordA FordB
FreezerRegularTrain FreezerSmallTrain Fungi GestureMidAirD1 GestureMidAirD2 GestureMidAirD3 GesturePebbleZ1
GesturePebbleZ2 GunPoint GunPointAgeSpan GunPointMaleVersusFemale GunPointOldVersusYoung Ham HandOutlines
Haptics Herring HouseTwenty InlineSkate InsectEPGRegularTrain InsectEPGSmallTrain InsectWingbeatSound
ItalyPowerDemand LargeKitchenAppliances Lightning2 Lightning7 Mallat Meat MedicalImages MelbournePedestrian
MiddlePhalanxOutlineCorrect MiddlePhalanxOutlineAgeGroup MiddlePhalanxTW MixedShapesRegularTrain
MixedShapesSmallTrain MoteStrain NonInvasiveFetalECGThorax1 NonInvasiveFetalECGThorax2 OliveOil OSULeaf
PhalangesOutlinesCorrect Phoneme PickupGestureWiimoteZ PigAirwayPressure PigArtPressure PigCVP PLAID Plane
PowerCons ProximalPhalanxOutlineCorrect ProximalPhalanxOutlineAgeGroup ProximalPhalanxTW
RefrigerationDevices Rock ScreenType SemgHandGenderCh2 SemgHandMovementCh2 SemgHandSubjectCh2
ShakeGestureWiimoteZ ShapeletSim ShapesAll SmallKitchenAppliances SmoothSubspace SonyAIBORobotSurface1
SonyAIBORobotSurface2 StarLightCurves Strawberry SwedishLeaf Symbols SyntheticControl ToeSegmentation1
ToeSegmentation2 Trace TwoLeadECG TwoPatterns UMD UWaveGestureLibraryAll UWaveGestureLibraryX
UWaveGestureLibraryY UWaveGestureLibraryZ Wafer Wine WordSynonyms Worms WormsTwoClass Yoga""".split()

UEA = """ArticularyWordRecognition AtrialFibrillation BasicMotions CharacterTrajectories Cricket
DuckDuckGeese EigenWorms Epilepsy EthanolConcentration ERing FaceDetection FingerMovements
HandMovementDirection Handwriting Heartbeat InsectWingbeat JapaneseVowels Libras LSST MotorImagery NATOPS
PenDigits PEMS-SF PhonemeSpectra RacketSports SelfRegulationSCP1 SelfRegulationSCP2 SpokenArabicDigits
StandWalkJump UWaveGestureLibrary""".split()

# TF-C releases: name -> (figshare article URL, folder name in the TF-C repository)
TFC = {
    "SleepEEG": ("https://figshare.com/ndownloader/articles/19930178/versions/1", "SleepEEG"),
    "TFC-Epilepsy": ("https://figshare.com/ndownloader/articles/19930199/versions/2", "Epilepsy"),
    "FD-A": ("https://figshare.com/ndownloader/articles/19930205/versions/1", "FD-A"),
    "FD-B": ("https://figshare.com/ndownloader/articles/19930226/versions/1", "FD-B"),
    "HAR": ("https://figshare.com/ndownloader/articles/19930244/versions/1", "HAR"),
    "Gesture": ("https://figshare.com/ndownloader/articles/19930247/versions/1", "Gesture"),
    "ECG": ("https://figshare.com/ndownloader/articles/19930253/versions/1", "ECG"),
    "EMG": ("https://figshare.com/ndownloader/articles/19930250/versions/1", "EMG"),
}

# TSER (Monash) regression archive on Zenodo: name -> record id. Targets are discarded (y = -1).
TSER = {
    "AppliancesEnergy": 18484626, "AustraliaRainfall": 18484479, "BIDMC32HR": 18485047,
    "BIDMC32RR": 18485020, "BIDMC32SpO2": 18484650, "BeijingPM10Quality": 18485104,
    "BeijingPM25Quality": 18484804, "BenzeneConcentration": 18484823, "Covid3Month": 18484843,
    "FloodModeling1": 18484910, "FloodModeling2": 18484871, "FloodModeling3": 18484859,
    "HouseholdPowerConsumption1": 18484579, "HouseholdPowerConsumption2": 18484955,
    "IEEEPPG": 18484606, "LiveFuelMoistureContent": 18484619, "NewsHeadlineSentiment": 18485036,
    "NewsTitleSentiment": 18484638, "PPGDalia": 18485135,
}

# Raw recordings used by DynaCL and LEAVES. Their loaders (windowing, labels, splits) are a separate
# issue; a loader is registered here as RAW[name]["loader"] = fn(data_dir, **kw) -> Dataset.
RAW: dict[str, dict] = {
    "HARTH": {"paper": "DynaCL", "source": "UCI ML repository, dataset 779", "loader": None},
    "AFDB": {"paper": "DynaCL", "source": "PhysioNet afdb (MIT-BIH Atrial Fibrillation)", "loader": None},
    "Apnea-ECG": {"paper": "LEAVES", "source": "PhysioNet apnea-ecg", "loader": None},
    "Sleep-EDF": {"paper": "LEAVES", "source": "PhysioNet sleep-edfx", "loader": None},
    "PTB-XL": {"paper": "LEAVES", "source": "PhysioNet ptb-xl", "loader": None},
    "PAMAP2": {"paper": "LEAVES", "source": "UCI ML repository, PAMAP2", "loader": None},
}

SYNTHETIC = "synthetic"


def list_datasets(family: str | None = None) -> list[str]:
    """Names load_dataset() accepts. family: 'ucr', 'uea', 'tfc', 'tser' or None for all."""
    fams = {"ucr": UCR, "uea": UEA, "tfc": list(TFC), "tser": list(TSER)}
    if family is not None:
        if family not in fams:
            raise UserError(f"unknown family {family!r}; choose one of {sorted(fams)}")
        return list(fams[family])
    return UCR + UEA + list(TFC) + list(TSER) + [SYNTHETIC]


def _resolve_name(name: str) -> str:
    """Exact name, else a case-insensitive match, else an error listing the closest names."""
    names = list_datasets()
    if name in names or name in RAW:
        return name
    lower = {n.lower(): n for n in names + list(RAW)}
    if name.lower() in lower:
        return lower[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(lower), n=5, cutoff=0.6)
    hint = ", ".join(lower[c] for c in close) if close else "none close"
    raise UserError(f"unknown dataset {name!r}. Closest names: {hint}. "
                     f"data.list_datasets() lists all {len(names)}; a path to a .ts/.npz/.pt file also works.")


# --------------------------------------------------------------------------- the Dataset object
@dataclass
class Dataset:
    """Arrays for one problem. X: (N, C, L) float32, NaN after each series' end; y: (N,) int64."""
    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    len_train: np.ndarray
    len_val: np.ndarray
    len_test: np.ndarray
    class_names: list = field(default_factory=list)   # original label strings, index = class id
    task: str = "classification"                       # or "regression" (TSER: y = -1, targets kept)
    targets: dict = field(default_factory=dict)        # regression targets per split, float64

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_channels(self) -> int:
        return self.X_train.shape[1]

    @property
    def length(self) -> int:
        return self.X_train.shape[2]

    @property
    def variable_length(self) -> bool:
        lens = np.concatenate([self.len_train, self.len_val, self.len_test])
        return bool((lens != self.length).any())

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}: train {len(self.X_train)}, val {len(self.X_val)}, "
                f"test {len(self.X_test)}, {self.n_channels} x {self.length}, {self.n_classes} classes)")


# --------------------------------------------------------------------------- downloads
class DownloadError(UserError, RuntimeError):
    """A dataset file could not be fetched or failed its checks; the message says what to do."""


def data_home(data_dir=None) -> Path:
    """The cache folder: argument, else $TS_DATA_DIR, else ~/.cache/timeseries-ssl."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("TS_DATA_DIR"):
        return Path(os.environ["TS_DATA_DIR"]).expanduser()
    return Path.home() / ".cache" / "timeseries-ssl"


def mirrored(url: str) -> str:
    """With TS_DATA_MIRROR set: <mirror>/<host>/<path>?<query>; otherwise the URL itself."""
    base = os.environ.get("TS_DATA_MIRROR", "").strip()
    if not base:
        return url
    u = urlsplit(url)
    return f"{base.rstrip('/')}/{u.netloc}{u.path}" + (f"?{u.query}" if u.query else "")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _looks_like_html(head: bytes) -> bool:
    h = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1024].lower()
    return h.startswith((b"<!doctype", b"<html", b"<!--", b"<head", b"<body", b"<title", b"<?xml")) \
        or b"<html" in h


def _progress(label: str, done: int, total: int | None, last: list) -> None:
    now = time.monotonic()
    if now - last[0] < 0.5 and (total is None or done < total):
        return
    last[0] = now
    msg = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
    end = "\r" if sys.stderr.isatty() else "\n"
    print(f"  downloading {label}: {msg}", end=end, file=sys.stderr, flush=True)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _refuse_link(path: Path, err: OSError) -> None:
    """An open with O_NOFOLLOW failed: if `path` is a symbolic link, say so (someone sharing the cache
    could point it at a file of yours; following it would overwrite that file)."""
    if path.is_symlink():
        raise DownloadError(f"{path} is a symbolic link (to {os.readlink(path)}); refusing to write through "
                            f"it. Remove the link and run again.") from None
    raise err


@contextlib.contextmanager
def _locked(folder: Path):
    """One process at a time fetches into a folder (seeds started in parallel on a cold cache).

    The lock file is opened without following a symbolic link and never truncated."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666)
    except PermissionError:        # another user's lock file in a shared cache: reading suffices for flock
        fd = os.open(lock, os.O_RDONLY | _NOFOLLOW)
    except OSError as e:
        _refuse_link(lock, e)
    try:
        try:
            import fcntl
            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:        # Windows: no advisory lock; parallel first downloads may clash
            pass
        yield
    finally:
        os.close(fd)               # closing releases the lock


def _validator(headers) -> tuple[str, str] | None:
    """What identifies this version of the server's file, for If-Range: a strong ETag, else Last-Modified."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return "ETag", etag
    if headers.get("Last-Modified"):
        return "Last-Modified", headers["Last-Modified"]
    return None


def download(url: str, dest: Path, expect: str = "zip") -> str:
    """Fetch url (through the mirror, if set) to dest atomically; return its SHA-256.

    Retries with backoff on connection errors, read timeouts, 5xx and cut-off bodies. A retry
    resumes the partial file only with `Range` + `If-Range` on the validator (strong ETag or
    Last-Modified) the server gave for it, so a file that changed on the server in between is sent
    whole; without a validator the retry starts from byte 0. A partial file left by an earlier,
    killed run is never resumed (what the server holds now may be another file). Before the rename
    into place the payload is flushed to disk and checked (`expect`: 'zip' must be a zip whose
    members pass their CRC, 'ts' must be a .ts file, 'any' is not checked); an HTML page or a
    corrupt file is removed and reported. The partial file is opened without following links and
    never survives this call. Where other processes may fetch the same file, call this under
    `_locked(dest.parent)`, as `fetch` does.
    """
    import requests

    real = mirrored(url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_err: Exception | None = None
    part.unlink(missing_ok=True)        # left by a killed run (or a link planted there): start fresh
    try:
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
        except OSError as e:
            _refuse_link(part, e)
        with os.fdopen(fd, "wb") as fh:
            validator = None            # (header, value) of the version the partial file holds
            for attempt in range(RETRIES):
                if attempt:
                    time.sleep(BACKOFF * 2 ** (attempt - 1))
                have = fh.tell()
                headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}   # byte offsets must be raw
                if have and validator is not None:
                    headers["Range"] = f"bytes={have}-"
                    headers["If-Range"] = validator[1]
                elif have:                                  # nothing to prove it is the same file: restart
                    fh.seek(0)
                    fh.truncate()
                    have = 0
                try:
                    with requests.get(real, stream=True, timeout=TIMEOUT, headers=headers) as r:
                        if r.status_code == 429 or r.status_code >= 500:
                            last_err = DownloadError(f"HTTP {r.status_code} from {real}")
                            continue
                        if r.status_code == 416:            # our partial file does not fit: start over
                            fh.seek(0)
                            fh.truncate()
                            last_err = DownloadError(f"HTTP 416 from {real}")
                            continue
                        if r.status_code >= 400:
                            raise DownloadError(f"HTTP {r.status_code} from {real}")
                        if r.status_code == 206:            # resumed: same version, continuing where we stopped
                            start = r.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
                            same = validator is not None and r.headers.get(validator[0], validator[1]) == validator[1]
                            if not have or not same or not start.isdigit() or int(start) != have:
                                fh.seek(0)
                                fh.truncate()
                                last_err = DownloadError(f"bad Content-Range or changed file from {real}")
                                continue
                        else:                               # 200: the whole file (new, or Range ignored)
                            fh.seek(0)
                            fh.truncate()
                            have = 0
                            validator = _validator(r.headers)
                        if "text/html" in r.headers.get("Content-Type", "") and expect != "any":
                            raise DownloadError(f"{real} returned an HTML page (Content-Type text/html), "
                                                "not a data file (an error or login page?); nothing was kept.")
                        total = r.headers.get("Content-Length")
                        total = int(total) + have if total is not None else None
                        last = [0.0]
                        for chunk in r.iter_content(1 << 14):
                            fh.write(chunk)
                            have += len(chunk)
                            _progress(dest.name, have, total, last)
                        if total is not None and have < total:
                            last_err = DownloadError(f"connection closed after {have} of {total} bytes")
                            continue
                    break
                except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                        requests.exceptions.InvalidURL) as e:
                    raise DownloadError(f"bad URL {real!r} ({e}); check TS_DATA_MIRROR") from None
                except requests.RequestException as e:     # connect error, read timeout, reset, ...
                    last_err = e
            else:
                raise DownloadError(f"{RETRIES} attempts failed; last error: {last_err}")
            fh.flush()
            os.fsync(fh.fileno())                           # on disk before the rename publishes it
        _check_payload(part, expect, real)
        os.replace(part, dest)
        _fsync_dir(dest.parent)
        return _sha256(dest)
    finally:
        part.unlink(missing_ok=True)


def _check_payload(path: Path, expect: str, url: str) -> None:
    """Refuse HTML pages, corrupt zips and files that are not .ts where a .ts is expected."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if _looks_like_html(head):
        raise DownloadError(f"{url} returned an HTML page, not a data file (an error or login page?); "
                            "nothing was kept.")
    if expect == "zip":
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError) as e:
            raise DownloadError(f"{url} is not a valid zip ({e}); nothing was kept.") from None
        if bad is not None:
            raise DownloadError(f"{url}: zip member {bad!r} fails its CRC check; nothing was kept.")
    elif expect == "ts":
        try:
            read_ts(path)
        except (ValueError, UnicodeDecodeError) as e:
            raise DownloadError(f"{url} is not a readable .ts file ({e}); nothing was kept.") from None


def _read_manifest(home: Path) -> dict:
    p = home / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else {}


def _write_manifest(home: Path, m: dict) -> None:
    text = json.dumps(m, indent=1, sort_keys=True).encode()
    _atomic_write(home / "manifest.json", lambda fh: fh.write(text))    # flushed to disk, user's umask


def _update_manifest(home: Path, key: str, entry: dict | None) -> None:
    """Add (entry) or drop (None) one archive, under a lock so parallel processes don't clash."""
    with _locked(home):
        m = _read_manifest(home)
        if entry is None:
            m.pop(key, None)
        else:
            m[key] = entry
        _write_manifest(home, m)


def _entry(url: str, path: Path, digest: str) -> dict:
    return {"url": url, "sha256": digest, "bytes": path.stat().st_size,
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


class _BadArchive(DownloadError):
    """The archive itself is unusable (unsafe paths, files missing, corrupt data): it is removed."""


def _members(zf: zipfile.ZipFile, zpath: Path, wanted: list[str]) -> dict[str, zipfile.ZipInfo]:
    """The zip member for each wanted file name, at the zip's top level or inside one folder.
    Refuses archives with absolute or '..' paths."""
    names = zf.namelist()
    for n in names:
        p = n.replace("\\", "/")
        if p.startswith("/") or (len(p) > 1 and p[1] == ":") or ".." in p.split("/"):
            raise _BadArchive(f"{zpath.name} holds an unsafe path {n!r} (absolute or with '..'); "
                              "refusing to extract it.")
    by_base: dict[str, list[str]] = {}
    for n in names:
        parts = n.rstrip("/").split("/")
        if len(parts) <= 2 and not n.endswith("/"):
            by_base.setdefault(parts[-1], []).append(n)
    missing = [w for w in wanted if w not in by_base]
    if missing:
        raise _BadArchive(f"{zpath.name} has no {missing} at its top level or in one folder "
                          f"(it holds {names[:10]}{'...' if len(names) > 10 else ''}).")
    return {w: zf.getinfo(sorted(by_base[w], key=len)[0]) for w in wanted}   # prefer the top-level copy


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            crc = zlib.crc32(chunk, crc)
    return crc


def _sync_extracted(zpath: Path, wanted: list[str], out_dir: Path) -> None:
    """Make out_dir hold each wanted file exactly as the (verified) archive has it.

    A file already there must match its member's size and CRC-32; one that does not (changed since
    it was extracted, or placed there by hand) is reported and never overwritten. Missing files are
    extracted to a temporary folder, checked against the member's CRC, flushed and renamed into place.
    """
    try:
        with zipfile.ZipFile(zpath) as zf:
            members = _members(zf, zpath, wanted)
            differ = [w for w, info in members.items() if (out_dir / w).exists() and
                      ((out_dir / w).stat().st_size != info.file_size or _crc32(out_dir / w) != info.CRC)]
            if differ:
                raise DownloadError(
                    f"{', '.join(str(out_dir / w) for w in differ)} differ{'s' if len(differ) == 1 else ''} from "
                    f"the verified archive {zpath.name} (size or CRC-32): changed since extraction, or placed "
                    f"there by hand. Nothing was overwritten. Delete {'it' if len(differ) == 1 else 'them'} to "
                    f"extract the archive's copy again, or delete {zpath} to use the files as they are.")
            todo = [w for w in wanted if not (out_dir / w).exists()]
            if not todo:
                return
            tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.extract."))
            try:
                for w in todo:
                    crc = 0
                    with zf.open(members[w]) as src, open(tmp / w, "wb") as dst:
                        for chunk in iter(lambda: src.read(1 << 20), b""):
                            crc = zlib.crc32(chunk, crc)
                            dst.write(chunk)
                        dst.flush()
                        os.fsync(dst.fileno())
                    if crc != members[w].CRC:
                        raise _BadArchive(f"{zpath.name}: member {members[w].filename!r} fails its CRC check.")
                out_dir.mkdir(parents=True, exist_ok=True)
                for w in todo:
                    os.replace(tmp / w, out_dir / w)
                _fsync_dir(out_dir)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise _BadArchive(f"{zpath.name} is not a valid zip ({e}).") from None


def _manual_hint(url: str, dest: Path, folder: Path, wanted: list[str]) -> str:
    via = f" (tried through the mirror as {mirrored(url)})" if mirrored(url) != url else ""
    return (f"Could not download {url}{via}.\nTo install it by hand, download that URL in a browser and save it as\n"
            f"  {dest}\nor put {', '.join(wanted)} into\n  {folder}\n"
            f"(or set TS_DATA_DIR to a folder holding <family>/<Name>/..., or TS_DATA_MIRROR to a mirror).")


def _sources(name: str, home: Path) -> tuple[Path, list[str], list[tuple[str, str, str]]]:
    """(folder, files the loader reads, [(url, file name in folder, 'zip' | 'ts')])."""
    if name in UCR or name in UEA:
        wanted = [f"{name}_TRAIN.ts", f"{name}_TEST.ts"]
        return home / "ucr_uea" / name, wanted, [
            (f"https://timeseriesclassification.com/aeon-toolkit/{name}.zip", f"{name}.zip", "zip")]
    if name in TFC:
        url, sub = TFC[name]
        return home / "tfc" / sub, ["train.pt", "val.pt", "test.pt"], [(url, f"{sub}.zip", "zip")]
    if name in TSER:
        wanted = [f"{name}_TRAIN.ts", f"{name}_TEST.ts"]
        return home / "tser" / name, wanted, [
            (f"https://zenodo.org/records/{TSER[name]}/files/{w}?download=1", w, "ts") for w in wanted]
    raise UserError(f"{name!r} has no downloadable files")


def fetch(name: str, data_dir=None) -> Path:
    """Make sure the files of a registered dataset are in the cache; return their folder.

    An archive listed in the manifest is checked against its SHA-256 on every use, and so is a
    fresh download of an archive the manifest already lists (a changed or tampered host is refused,
    not recorded anew). The extracted files are checked against the archive's CRC-32 on every use.
    An archive put in place by hand is checked like a download (a valid zip, no unsafe paths) and
    recorded. Extracted files found without an archive (placed by hand) are used as they are, and a
    file placed by hand is never overwritten.
    """
    name = _resolve_name(name)
    home = data_home(data_dir)
    folder, wanted, sources = _sources(name, home)
    if all((folder / w).exists() for w in wanted) and not any((folder / f).exists() for _, f, _ in sources):
        return folder                                  # files placed by hand (or a read-only copy)
    with _locked(folder):
        for url, fname, kind in sources:
            target = folder / fname
            key = target.relative_to(home).as_posix()
            listed = _read_manifest(home).get(key)
            reset = (f"If the host really publishes a new version, reset this one record: remove the entry "
                     f"\"{key}\" from {home / 'manifest.json'} and run again.")
            by_hand = target.exists() and listed is None       # the user's file: reported, never deleted
            if target.exists():
                digest = _sha256(target)
                if listed is not None and digest != listed["sha256"]:
                    raise DownloadError(
                        f"{target} has changed since it was downloaded (SHA-256 {digest[:12]}..., manifest "
                        f"says {listed['sha256'][:12]}...). Delete {folder} to download it again; the new "
                        f"copy is checked against the same record.")
                if listed is None:                     # put here by hand: check it like a download
                    try:
                        _check_payload(target, kind, str(target))
                    except DownloadError as e:
                        raise DownloadError(f"{e} Replace {target} with the file from {url}.") from None
            else:
                try:
                    digest = download(url, target, expect=kind)
                except (DownloadError, OSError) as e:
                    raise DownloadError(f"{e}\n" + _manual_hint(url, target, folder, wanted)) from None
                if listed is not None and digest != listed["sha256"]:
                    target.unlink(missing_ok=True)
                    raise DownloadError(
                        f"{mirrored(url)} now serves a different file than the one recorded on "
                        f"{listed.get('recorded', '?')} (SHA-256 {digest[:12]}..., recorded "
                        f"{listed['sha256'][:12]}...); it was not kept. {reset}")
            if kind == "zip":
                try:
                    with zipfile.ZipFile(target) as zf:
                        _members(zf, target, wanted)   # usable: safe paths, every wanted file inside
                except (_BadArchive, zipfile.BadZipFile, zlib.error, EOFError) as e:
                    if by_hand:
                        raise DownloadError(f"{e} Replace {target} with the file from {url}.") from None
                    target.unlink(missing_ok=True)     # an archive we cannot use is not kept
                    if listed is not None:
                        _update_manifest(home, key, None)
                    raise DownloadError(f"{e}\n{target.name} was removed.") from None
            if listed is None:                         # recorded once it proved usable
                _update_manifest(home, key, _entry(url, target, digest))
            if kind == "zip":
                try:
                    _sync_extracted(target, wanted, folder)
                except _BadArchive as e:               # the archive itself is bad: drop it and its record
                    target.unlink(missing_ok=True)
                    _update_manifest(home, key, None)
                    raise DownloadError(f"{e}\n{target.name} was removed.") from None
                except OSError as e:                   # full disk, permissions: the archive is fine, keep it
                    raise DownloadError(f"could not write the files of {target.name} into {folder} ({e}). "
                                        f"The verified archive is kept; fix that and run again.") from None
    return folder


# --------------------------------------------------------------------------- parsers
def read_ts(path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Parse a sktime/aeon .ts file.

    Returns X (N, C, L) float32 NaN-padded at the end, lengths (N,), labels (N,) as strings
    (regression targets as strings too; None-filled when the file has no labels) and the header.
    Handles comments (#), headers (@...), ':'-separated dimensions, '?' missing values, unequal
    lengths, string or numeric class labels and @targetlabel regression files.
    """
    path = Path(path)
    header: dict = {}
    cases: list[list[np.ndarray]] = []
    labels: list = []
    in_data = False
    has_label = False
    for lineno, line in _utf8_lines(path):
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise UserError(f"{path}:{lineno}: expected a @header or @data before the data")
            key, *rest = line[1:].split(None, 1)
            key, val = key.lower(), (rest[0] if rest else "")
            if key == "data":
                in_data = True
                if _flag(header, "timestamps"):
                    raise UserError(f"{path}: @timeStamps true files are not supported")
                has_label = _flag(header, "classlabel") or _flag(header, "targetlabel")
            else:
                header[key] = val.strip()
            continue
        parts = line.split(":")
        if has_label:
            labels.append(parts[-1].strip())
            parts = parts[:-1]
            if not labels[-1]:
                raise UserError(f"{path}:{lineno}: empty {'target' if _flag(header, 'targetlabel') else 'class label'} "
                                "after the last ':'; every case needs one.")
        try:
            dims = [np.array(p.replace("?", "nan").split(","), dtype=np.float64) if p.strip() else
                    np.zeros(0) for p in parts]
        except ValueError as e:
            raise UserError(f"{path}:{lineno}: cannot parse values ({e})") from None
        if cases and len(dims) != len(cases[0]):
            raise UserError(f"{path}:{lineno}: {len(dims)} dimensions, earlier cases have {len(cases[0])}")
        cases.append(dims)
    if not in_data:
        raise UserError(f"{path}: no @data line; is this a .ts file?")
    if not cases:
        raise UserError(f"{path}: no cases after @data")
    X, lengths = _stack(cases)
    y = np.array(labels, dtype=object) if labels else np.array([None] * len(cases), dtype=object)
    return X, lengths, y, header


def _flag(header: dict, key: str) -> bool:
    """A .ts header flag (@classLabel, @targetLabel, @timeStamps, ...; keys are lower-cased when
    read): true when its first word is 'true' in any case. The one reader of every header flag."""
    return (header.get(key, "").split() or ["false"])[0].lower() == "true"


def _utf8_lines(path, strip=True):
    """(line number, stripped line) of a text file decoded strictly as UTF-8 (a leading BOM is
    dropped): bytes that are not UTF-8 are refused, never replaced, so distinct labels stay distinct.
    Only a comment line ('#' in .ts, '%' in .arff; never data) may hold other bytes."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                if not raw.lstrip().startswith((b"#", b"%")):
                    raise UserError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start}); labels "
                                    "decoded by guessing could merge distinct classes. Re-save the file as "
                                    "UTF-8.") from None
                text = raw.decode("utf-8", errors="replace")
            yield lineno, text.strip() if strip else text.rstrip("\r\n")


def _stack(cases: list[list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Cases of per-dimension 1-D arrays -> X (N, C, L) float32 NaN-padded at the end, lengths (N,)."""
    n, c = len(cases), len(cases[0])
    lengths = np.array([max(len(d) for d in case) for case in cases], dtype=np.int64)
    X = np.full((n, c, int(lengths.max())), np.nan, dtype=np.float32)
    for i, case in enumerate(cases):
        for j, d in enumerate(case):
            X[i, j, :len(d)] = d
    return X, lengths


def read_arff(path) -> tuple[np.ndarray, np.ndarray]:
    """UCR/UEA .arff: univariate rows `v1,...,vL,label`, or multivariate relational rows
    `'ch1 values\\nch2 values...',label` (channels separated by a literal backslash-n)."""
    cases, labels, in_data = [], [], False
    for lineno, line in _utf8_lines(path):
        if not line or line.startswith("%"):
            continue
        if not in_data:
            in_data = line.lower().startswith("@data")
            continue
        body, _, label = line.rpartition(",")
        labels.append(label.strip().strip("'\""))
        if not labels[-1]:
            raise UserError(f"{path}:{lineno}: empty class label after the last ','; every row needs one.")
        parts = body.strip().strip("'").split("\\n") if body.lstrip().startswith("'") else [body]
        try:
            cases.append([np.array(p.replace("?", "nan").split(","), dtype=np.float64) for p in parts])
        except ValueError as e:
            raise UserError(f"{path}:{lineno}: cannot parse values ({e})") from None
    if not cases:
        raise UserError(f"{path}: no data rows after @data")
    X, _ = _stack(cases)
    return X, np.array(labels, dtype=object)


def read_ucr_tsv(path) -> tuple[np.ndarray, np.ndarray]:
    """UCR 2018 .tsv: one series a line, label first, tab-separated, NaN for missing."""
    rows = [(lineno, line.split("\t")) for lineno, line in _utf8_lines(path, strip=False) if line.strip()]
    for lineno, r in rows:
        if not r[0].strip():
            raise UserError(f"{path}:{lineno}: empty class label in the first column; every row needs one.")
    rows = [r for _, r in rows]
    y = np.array([r[0] for r in rows], dtype=object)
    L = max(len(r) - 1 for r in rows)
    X = np.full((len(rows), 1, L), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        X[i, 0, :len(r) - 1] = np.array(r[1:], dtype=np.float64)
    return X, y


_NUMPY_SAFE = re.compile(r"numpy\.(ndarray|dtype|(_core|core)\.multiarray\.(_reconstruct|scalar)|dtypes\.\w+DType)")


def _import_global(qualname: str):
    module, _, attr = qualname.rpartition(".")
    return getattr(importlib.import_module(module), attr)


# torch.load(weights_only=True) could be made to run code before these releases: CVE-2025-32434
# (fixed in 2.6) and CVE-2026-24747 (fixed in 2.10). requirements.txt asks for this release too.
TORCH_SAFE_LOAD = (2, 10)


def _torch_version(v: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", v)
    return (int(m[1]), int(m[2])) if m else (0, 0)


def read_pt(path) -> tuple[np.ndarray, np.ndarray]:
    """TF-C .pt file: dict with 'samples' (N, C, L) or (N, L) and 'labels' (N,); no pickle allowed."""
    import pickle
    import torch
    if _torch_version(torch.__version__) < TORCH_SAFE_LOAD:
        raise UserError(f"torch {torch.__version__} can be made to run code while loading a .pt file even with "
                        f"weights_only=True (CVE-2025-32434, CVE-2026-24747); {path} is not opened. Install "
                        f"torch>={'.'.join(map(str, TORCH_SAFE_LOAD))} (pip install -U torch).")
    try:
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # Some releases store numpy arrays. Allow numpy's array rebuilders, and nothing else.
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            if not unsafe or not all(_NUMPY_SAFE.fullmatch(g) for g in unsafe):
                raise
            dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType") and n != "ObjectDType"]
            with torch.serialization.safe_globals([_import_global(g) for g in unsafe] + dtypes):
                d = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(f"{path} needs Python pickle to load (weights_only=True refused it: {str(e)[:200]}). "
                         "Re-save it as a dict of tensors, e.g. torch.save({'samples': x, 'labels': y}, path), "
                         "from an environment you trust.") from None
    if not isinstance(d, dict) or "samples" not in d or "labels" not in d:
        raise UserError(f"{path}: expected a dict with 'samples' and 'labels', got "
                         f"{type(d).__name__}{' with keys ' + str(list(d)) if isinstance(d, dict) else ''}")
    X = torch.as_tensor(np.asarray(d["samples"]) if not torch.is_tensor(d["samples"]) else d["samples"]).float().numpy()
    if X.ndim == 2:
        X = X[:, None, :]
    y = np.asarray(d["labels"]).astype(np.int64) if not torch.is_tensor(d["labels"]) else d["labels"].long().numpy()
    return np.ascontiguousarray(X, dtype=np.float32), y


# --------------------------------------------------------------------------- splits and labels
def _label_order(labels) -> list[str]:
    """Distinct training labels, sorted numerically when all are numbers, else as strings."""
    uniq = sorted(set(str(v) for v in labels))
    try:
        return sorted(uniq, key=float)
    except ValueError:
        return uniq


def _encode(labels, names: list[str], split: str, ds_name: str) -> np.ndarray:
    idx = {n: i for i, n in enumerate(names)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, v in enumerate(labels):
        s = str(v)
        if s not in idx:
            raise UserError(f"{ds_name}: {split} label {s!r} never occurs in train (train has {names})")
        out[i] = idx[s]
    return out


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): about `fraction` of each class held out, at least one per class where
    the class has two or more examples, and at least one kept. Seeded; never touches the test set."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = int(round(fraction * len(idx)))
        if fraction > 0 and len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        else:
            k = min(k, len(idx) - 1)
        held.extend(idx[:k].tolist())
    held = np.sort(np.array(held, dtype=np.int64))
    keep = np.setdiff1d(np.arange(len(y)), held)
    return keep, held


def _lengths(X: np.ndarray) -> np.ndarray:
    """Per-series length: one past the last time step where any channel is observed."""
    obs = ~np.isnan(X).all(axis=1)                                   # (N, L)
    last = obs.shape[1] - np.argmax(obs[:, ::-1], axis=1)
    return np.where(obs.any(axis=1), last, 0).astype(np.int64)


def _pad_to(X: np.ndarray, L: int) -> np.ndarray:
    if X.shape[2] == L:
        return X
    out = np.full(X.shape[:2] + (L,), np.nan, dtype=np.float32)
    out[:, :, :X.shape[2]] = X
    return out


def check_arrays(X: np.ndarray, name: str, split: str) -> None:
    """Refuse input that would silently break training: wrong rank, inf, all-missing series."""
    if X.ndim != 3:
        raise UserError(f"{name} {split}: X must be (N, C, L), got shape {X.shape}; "
                         "add a channel axis for univariate data (X[:, None, :]).")
    if len(X) and np.isinf(X).any():
        raise UserError(f"{name} {split}: X holds +-inf values; replace them (NaN marks missing values).")
    if len(X):
        empty = np.flatnonzero(np.isnan(X).all(axis=(1, 2)))
        if len(empty):
            raise UserError(f"{name} {split}: series {empty[:10].tolist()} are entirely missing (NaN); "
                             "drop them before loading.")


def _assemble(name, Xtr, ytr, Xte, yte, Xva=None, yva=None, val_fraction=0.2, seed=0,
              task="classification", lengths: dict | None = None) -> Dataset:
    """Labels to 0..K-1 (train order), validation carved from train when absent, common length.

    task='regression': labels are real-valued targets, kept in ds.targets; y is -1.
    lengths: per-split series lengths from the parser; else one past the last observed step.
    """
    if not 0 <= val_fraction < 1:
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if len(Xtr) < 2:
        raise UserError(f"{name}: only {len(Xtr)} training series; at least 2 are needed.")
    if len(Xte) == 0:
        raise UserError(f"{name}: the test split is empty.")
    for split, X, y in (("train", Xtr, ytr), ("test", Xte, yte), ("val", Xva, yva)):
        if X is not None:
            check_arrays(X, name, split)
            if len(X) != len(y):
                raise UserError(f"{name} {split}: {len(X)} series but {len(y)} labels")
            if task != "regression" and any(v is None for v in y):
                raise UserError(f"{name} {split}: the file has no class labels (@classLabel false); "
                                 "these methods evaluate on labelled data.")
    if Xva is not None and len(Xva):                   # validation never shares a series with test
        in_test = {r.tobytes() for r in np.ascontiguousarray(Xte, dtype=np.float32).reshape(len(Xte), -1)}
        dup = np.array([r.tobytes() in in_test for r in
                        np.ascontiguousarray(Xva, dtype=np.float32).reshape(len(Xva), -1)])
        if dup.any():
            print(f"note: {name}: {int(dup.sum())} of {len(Xva)} validation series also appear in the test "
                  "split; " + ("the release's validation split is its test split, so a validation split is "
                               "carved from train instead" if dup.all() else "they are dropped from validation"),
                  file=sys.stderr)
            if dup.all():
                Xva = yva = None
                (lengths or {}).pop("val", None)
            else:
                Xva, yva = Xva[~dup], np.asarray(yva, dtype=object)[~dup]
                if lengths and "val" in lengths:
                    lengths["val"] = np.asarray(lengths["val"])[~dup]
    chans = {s: X.shape[1] for s, X in (("train", Xtr), ("test", Xte), ("val", Xva)) if X is not None}
    if len(set(chans.values())) > 1:
        raise UserError(f"{name}: the splits have different channel counts {chans}; every split must "
                        "hold the same variables, as (N, C, L) with one C.")
    lengths = {s: np.asarray(v) for s, v in (lengths or {}).items()}
    lengths.update({s: _lengths(X) for s, X in (("train", Xtr), ("test", Xte), ("val", Xva))
                    if X is not None and s not in lengths})
    targets: dict = {}
    if task == "regression":
        names: list[str] = []
        targets = {s: np.asarray(y, dtype=np.float64) for s, y in (("train", ytr), ("test", yte), ("val", yva))
                   if y is not None}
        enc = lambda y, s: np.full(len(y), -1, dtype=np.int64)   # noqa: E731  (no classes)
    else:
        for split, y in (("train", ytr), ("test", yte), ("val", yva)):
            empty = [i for i, v in enumerate(y if y is not None else []) if not str(v).strip()]
            if empty:
                raise UserError(f"{name} {split}: labels of series {empty[:10]} are empty; every series needs "
                                "a class label (an empty one would become a class of its own).")
        names = _label_order(ytr)
        if len(names) < 2:
            raise UserError(f"{name}: the training labels hold one class ({names[0]!r}); classification "
                            "needs at least two classes.")
        enc = lambda y, s: _encode(y, names, s, name)            # noqa: E731
    y_tr = enc(ytr, "train")
    if Xva is None:                                    # carve validation from train, never from test
        keep, held = stratified_split(y_tr if task != "regression" else np.zeros(len(Xtr)), val_fraction, seed)
        Xva, y_va, Xtr, y_tr = Xtr[held], y_tr[held], Xtr[keep], y_tr[keep]
        lengths["val"], lengths["train"] = lengths["train"][held], lengths["train"][keep]
        if targets:
            targets["val"], targets["train"] = targets["train"][held], targets["train"][keep]
    else:
        y_va = enc(yva, "val")
    y_te = enc(yte, "test")
    L = max(X.shape[2] for X in (Xtr, Xva, Xte))
    Xtr, Xva, Xte = (_pad_to(np.asarray(X, dtype=np.float32), L) for X in (Xtr, Xva, Xte))
    return Dataset(name, Xtr, y_tr, Xva, y_va, Xte, y_te, lengths["train"].astype(np.int64),
                   lengths["val"].astype(np.int64), lengths["test"].astype(np.int64),
                   class_names=names, task=task, targets=targets)


def _task(header: dict) -> str:
    return "regression" if _flag(header, "targetlabel") else "classification"


# --------------------------------------------------------------------------- public entry point
def load_dataset(name: str, data_dir=None, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Load a dataset by registered name, or from a path to a .ts / .npz / .pt file.

    val_fraction, seed: the stratified validation split carved from train when the release has
    none (TF-C releases have one). The test split is always the official one, untouched.
    Nothing is normalised here; see `standardize`.
    """
    if os.sep in str(name) or str(name).endswith((".ts", ".npz", ".pt", ".tsv", ".arff")):
        return load_file(name, val_fraction=val_fraction, seed=seed)
    if str(name).lower() == SYNTHETIC:
        return make_synthetic(seed=seed, val_fraction=val_fraction)
    name = _resolve_name(name)
    if name in RAW:
        if RAW[name]["loader"] is None:
            raise UserError(f"{name} ({RAW[name]['paper']}; {RAW[name]['source']}) is a raw-recording dataset "
                             "whose loader is not written yet (separate issue). Until then, window it yourself "
                             "and pass a .npz with X_train, y_train, X_test, y_test.")
        return RAW[name]["loader"](data_home(data_dir), val_fraction=val_fraction, seed=seed)
    folder = fetch(name, data_dir)
    if name in TFC:
        parts = {s: read_pt(folder / f"{s}.pt") for s in ("train", "val", "test")}
        return _assemble(name, *parts["train"], *parts["test"], *parts["val"], seed=seed)
    return _load_ts_pair(name, folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts", val_fraction, seed)


def _load_ts_pair(name, train_path, test_path, val_fraction, seed) -> Dataset:
    Xtr, ltr, ytr, h = read_ts(train_path)
    Xte, lte, yte, _ = read_ts(test_path)
    return _assemble(name, Xtr, ytr, Xte, yte, val_fraction=val_fraction, seed=seed, task=_task(h),
                     lengths={"train": ltr, "test": lte})


def load_file(path, val_fraction: float = 0.2, seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """A user's own file.

    .ts   `<stem>_TRAIN.ts` with `<stem>_TEST.ts` beside it (either may be given); the same
          for UCR-2018 .tsv and UCR/UEA .arff pairs. A single file alone is split as .npz X, y is.
    .npz  arrays X_train, y_train, X_test, y_test (optionally X_val, y_val), X as (N, C, L) or (N, L);
          or just X, y, in which case a stratified, seeded test split of `test_fraction` is carved.
    .pt   a TF-C-style dict of 'samples', 'labels' with train.pt / test.pt (/ val.pt) beside it.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    stem = path.stem
    up = stem.upper()
    base = stem[:-6] if up.endswith("_TRAIN") else stem[:-5] if up.endswith("_TEST") else None
    if path.suffix == ".ts":
        if base is None:
            X, lens, y, h = read_ts(path)
            return _split_single(stem, X, y, val_fraction, seed, test_fraction, _task(h), lens)
        tr, te = path.with_name(f"{base}_TRAIN.ts"), path.with_name(f"{base}_TEST.ts")
        for p in (tr, te):
            if not p.exists():
                raise FileNotFoundError(f"{p} is missing; a _TRAIN.ts file needs its _TEST.ts beside it")
        return _load_ts_pair(base, tr, te, val_fraction, seed)
    if path.suffix in (".tsv", ".arff"):
        reader = read_ucr_tsv if path.suffix == ".tsv" else read_arff
        if base is None:
            X, y = reader(path)
            return _split_single(stem, X, y, val_fraction, seed, test_fraction)
        Xtr, ytr = reader(path.with_name(f"{base}_TRAIN{path.suffix}"))
        Xte, yte = reader(path.with_name(f"{base}_TEST{path.suffix}"))
        return _assemble(base, Xtr, ytr, Xte, yte, val_fraction=val_fraction, seed=seed)
    if path.suffix == ".pt":
        parts = {s: read_pt(path.with_name(f"{s}.pt")) for s in ("train", "val", "test")
                 if path.with_name(f"{s}.pt").exists()}
        if "train" not in parts or "test" not in parts:
            raise FileNotFoundError(f"{path.parent} needs train.pt and test.pt (val.pt optional)")
        va = parts.get("val", (None, None))
        return _assemble(path.parent.name, *parts["train"], *parts["test"], *va, val_fraction=val_fraction, seed=seed)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                z = {k: npz[k] for k in npz.files}          # read every array now, inside the check
            keys = set(z)
        except (ValueError, OSError, zipfile.BadZipFile) as e:
            raise UserError(f"{path} is not a readable .npz archive of plain arrays ({e}). Save one with "
                            "np.savez(path, X_train=..., y_train=..., X_test=..., y_test=...), with "
                            "numeric or string arrays (object arrays need pickle and are refused).") from None
        fix = lambda X: np.asarray(X, dtype=np.float32)[:, None, :] if np.ndim(X) == 2 else np.asarray(X, np.float32)  # noqa: E731
        if {"X_train", "y_train", "X_test", "y_test"} <= keys:
            va = (fix(z["X_val"]), z["y_val"]) if {"X_val", "y_val"} <= keys else (None, None)
            return _assemble(stem, fix(z["X_train"]), z["y_train"], fix(z["X_test"]), z["y_test"], *va,
                             val_fraction=val_fraction, seed=seed)
        if {"X", "y"} <= keys:
            return _split_single(stem, fix(z["X"]), z["y"], val_fraction, seed, test_fraction)
        raise UserError(f"{path}: expected arrays X_train, y_train, X_test, y_test (or X, y); found {sorted(keys)}")
    raise UserError(f"{path}: unsupported file type {path.suffix!r}; use .ts, .arff, .tsv, .npz or .pt")


def _split_single(name, X, y, val_fraction, seed, test_fraction, task="classification", lengths=None) -> Dataset:
    """One file holds everything: carve a stratified, seeded test split (its own seed stream)."""
    y = np.asarray(y, dtype=object) if task == "regression" else np.array([str(v) for v in y], dtype=object)
    strata = np.zeros(len(y)) if task == "regression" else y
    keep, held = stratified_split(strata, test_fraction, seed + 10_000)
    lens = None if lengths is None else {"train": lengths[keep], "test": lengths[held]}
    return _assemble(name, X[keep], y[keep], X[held], y[held], val_fraction=val_fraction, seed=seed,
                     task=task, lengths=lens)


def make_synthetic(n_train: int = 48, n_test: int = 48, length: int = 64, channels: int = 1,
                   n_classes: int = 3, seed: int = 0, val_fraction: float = 0.2) -> Dataset:
    """A tiny labelled set for tests and quick looks: class k is a noisy sine of frequency k+1."""
    rng = np.random.default_rng(1234)            # the data itself does not depend on `seed`
    def draw(n):
        y = np.arange(n) % n_classes
        t = np.linspace(0, 1, length)
        phase = rng.uniform(0, 2 * np.pi, (n, channels, 1))
        X = np.sin(2 * np.pi * (y[:, None, None] + 1) * t + phase) + 0.3 * rng.standard_normal((n, channels, length))
        return X.astype(np.float32), y.astype(str)
    Xtr, ytr = draw(n_train)
    Xte, yte = draw(n_test)
    return _assemble(SYNTHETIC, Xtr, ytr, Xte, yte, val_fraction=val_fraction, seed=seed)


def standardize(ds: Dataset, per: str = "channel") -> Dataset:
    """Z-normalise every split with TRAIN statistics only (NaN-aware).
    per='channel': one mean/std per channel over all training series and steps;
    per='global': one mean/std over everything in train."""
    axes = (0, 2) if per == "channel" else (0, 1, 2)
    mu = np.nanmean(ds.X_train, axis=axes, keepdims=True)
    sd = np.nanstd(ds.X_train, axis=axes, keepdims=True)
    sd = np.where(sd > 0, sd, 1.0)
    f = lambda X: ((X - mu) / sd).astype(np.float32)    # noqa: E731
    return replace(ds, X_train=f(ds.X_train), X_val=f(ds.X_val), X_test=f(ds.X_test))


if __name__ == "__main__":
    # python data.py GunPoint [data_dir]   downloads (if needed) and prints a summary
    if len(sys.argv) < 2:
        print(f"usage: python data.py NAME [DATA_DIR]   ({len(list_datasets())} names: data.list_datasets())")
        sys.exit(1)
    try:
        print(load_dataset(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
    except (UserError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
