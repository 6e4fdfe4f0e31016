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
  raw     Apnea-ECG, Sleep-EDF, PTB-XL, PAMAP2 (windowed, LEAVES); HARTH, AFDB as continuous recordings
          per subject via load_recordings() (DynaCL). PhysioNet / UCI files, read by the readers below.

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

# Raw recordings used by DynaCL and LEAVES; their readers and loaders are in the section "raw recordings"
# below, which sets RAW[name]["loader"] = fn(home, val_fraction, seed) -> Dataset.
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
    subjects: dict = field(default_factory=dict)       # raw recordings: subject of every series, per split

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
    if Xva is not None and len(Xva):                   # a release's validation split is not its test split
        in_test = {r.tobytes() for r in np.ascontiguousarray(Xte, dtype=np.float32).reshape(len(Xte), -1)}
        dup = np.array([r.tobytes() in in_test for r in
                        np.ascontiguousarray(Xva, dtype=np.float32).reshape(len(Xva), -1)])
        if dup.all():                                  # e.g. TF-C Gesture: val.pt holds test.pt's series
            print(f"note: {name}: every validation series also appears in the test split, so validation "
                  "is carved from train instead", file=sys.stderr)
            Xva = yva = None
            (lengths or {}).pop("val", None)
        elif dup.any():                                # identical series (flat segments, say): kept
            print(f"note: {name}: {int(dup.sum())} of {len(Xva)} validation series are identical to test "
                  "series", file=sys.stderr)
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
            raise UserError(f"{name} ({RAW[name]['paper']}; {RAW[name]['source']}) has no loader registered "
                             "in data.RAW; window it yourself and pass a .npz with X_train, y_train, X_test, y_test.")
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


# =========================================================================== raw recordings (issue 9)
# HARTH, AFDB, Apnea-ECG, Sleep-EDF, PTB-XL, PAMAP2 start from raw recordings, not from ready-made
# splits. This section reads the formats they ship in with small numpy readers (WFDB formats 16 and
# 212, WFDB annotations, EDF/EDF+, UCI text), fetches only the files a dataset needs through
# `download` (cache, mirror, atomic writes) and cuts them as the papers do:
#   load_dataset("Apnea-ECG" | "Sleep-EDF" | "PTB-XL" | "PAMAP2")  -> windowed Dataset (LEAVES)
#   load_recordings("HARTH" | "AFDB")                               -> continuous labelled recordings
#                                                                      per subject (DynaCL frames them)
# The readers are checked in tests/test_raw.py against the reference readers (`wfdb`, `edfio`) on real
# files; neither is needed at run time. Splits are by subject wherever the release names subjects.

PHYSIONET = "https://physionet.org/files"
HARTH_URL = "https://archive.ics.uci.edu/static/public/779/harth.zip"
PAMAP2_URL = "https://archive.ics.uci.edu/static/public/231/pamap2+physical+activity+monitoring.zip"
AFDB_VERSION, APNEA_VERSION, SLEEP_EDF_VERSION, PTBXL_VERSION = "1.0.0", "1.0.0", "1.0.0", "1.0.2"

# AFDB: the 23 records with signals (00735 and 03665 ship annotations only).
AFDB_RECORDS = """04015 04043 04048 04126 04746 04908 04936 05091 05121 05261 06426 06453 06995 07162
07859 07879 07910 08215 08219 08378 08405 08434 08455""".split()
AFDB_RHYTHMS = ["AFIB", "AFL", "J", "N"]          # class ids 0..3; "(N" = all other rhythms
# Apnea-ECG release split: learning set a01-a20, b01-b05, c01-c10; test set x01-x35.
APNEA_TRAIN = [f"a{i:02d}" for i in range(1, 21)] + [f"b{i:02d}" for i in range(1, 6)] + [f"c{i:02d}" for i in range(1, 11)]
APNEA_TEST = [f"x{i:02d}" for i in range(1, 36)]
# Sleep-EDF: Sleep-EDF-20 = sleep-cassette subjects 0-19 (39 nights; subject 13 has one night).
SLEEP_EDF_SUBJECTS = 20
SLEEP_EDF_TEST_FRACTION = 0.25                   # test = the last 25% of subjects by ID (LEAVES)
SLEEP_STAGES = {"Sleep stage W": "W", "Sleep stage 1": "N1", "Sleep stage 2": "N2", "Sleep stage 3": "N3",
                "Sleep stage 4": "N3", "Sleep stage R": "REM"}   # R&K S3+S4 -> N3; "?", movement dropped
SLEEP_WAKE_EDGE = 60                              # epochs of wake kept before/after sleep (30 min)
PTBXL_SUPERCLASSES = ["NORM", "MI", "STTC", "CD", "HYP"]
# PAMAP2 protocol activities (12) and the split of Moya Rueda et al. / Viewmaker used by LEAVES.
PAMAP2_ACTIVITIES = {1: "lying", 2: "sitting", 3: "standing", 4: "walking", 5: "running", 6: "cycling",
                     7: "Nordic walking", 12: "ascending stairs", 13: "descending stairs",
                     16: "vacuum cleaning", 17: "ironing", 24: "rope jumping"}
PAMAP2_VAL, PAMAP2_TEST = "105", "106"
# HARTH activity codes -> class ids 0..11 in this order (DynaCL's mapping).
HARTH_CODES = {1: "walking", 2: "running", 3: "shuffling", 4: "stairs (ascending)", 5: "stairs (descending)",
               6: "standing", 7: "sitting", 8: "lying", 13: "cycling (sit)", 14: "cycling (stand)",
               130: "cycling (sit, inactive)", 140: "cycling (stand, inactive)"}


# --------------------------------------------------------------------------- WFDB reader
@dataclass
class WfdbHeader:
    """A WFDB .hea file: record line, one dict per signal line, comments."""
    record: str
    fs: float
    n_samples: int
    signals: list
    comments: list


_FMT = re.compile(r"^(\d+)(?:x(\d+))?(?::(-?\d+))?(?:\+(\d+))?$")
_GAIN = re.compile(r"^([-+0-9.eE]+)(?:\((-?\d+)\))?(?:/(\S+))?$")


def read_wfdb_header(path) -> WfdbHeader:
    """Parse `<record>.hea` (single-segment records; signal files in the same folder).

    Record line: `name nsig [fs[/cfreq[(base)]] [nsamp ...]]`. Signal lines:
    `file format[xspf][:skew][+offset] [gain[(baseline)][/units] [adcres [adczero [init [checksum
    [blocksize [description]]]]]]]`. Defaults as in the WFDB library: fs 250, gain 200 (also when
    written as 0), baseline = adczero.
    """
    path = Path(path)
    try:
        return _read_wfdb_header(path)
    except (ValueError, IndexError) as e:
        raise UserError(f"{path}: malformed WFDB header ({e})") from None


def _read_wfdb_header(path: Path) -> WfdbHeader:
    lines = [ln.strip() for ln in path.read_text(encoding="latin-1").splitlines()]
    comments = [ln.lstrip("#").strip() for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    if not body:
        raise UserError(f"{path}: empty WFDB header")
    rec = body[0].split()
    if "/" in rec[0]:
        raise UserError(f"{path}: multi-segment WFDB records are not supported")
    nsig = int(rec[1])
    fs = float(re.split(r"[/(]", rec[2])[0]) if len(rec) > 2 else 250.0
    nsamp = int(rec[3]) if len(rec) > 3 else 0
    if len(body) - 1 < nsig:
        raise UserError(f"{path}: the record line announces {nsig} signals, {len(body) - 1} signal lines follow")
    signals = []
    for ln in body[1:1 + nsig]:
        tok = ln.split(None, 8)
        m = _FMT.match(tok[1])
        if not m:
            raise UserError(f"{path}: cannot read the format field {tok[1]!r}")
        fmt, spf, skew, offset = m.group(1), int(m.group(2) or 1), int(m.group(3) or 0), int(m.group(4) or 0)
        gain, baseline, units = 0.0, None, "mV"
        if len(tok) > 2:
            g = _GAIN.match(tok[2])
            if not g:
                raise UserError(f"{path}: cannot read the gain field {tok[2]!r}")
            gain = float(g.group(1))
            baseline = int(g.group(2)) if g.group(2) is not None else None
            units = g.group(3) or units
        adc_zero = int(tok[4]) if len(tok) > 4 else 0
        signals.append(dict(
            file=tok[0], fmt=fmt, spf=spf, skew=skew, offset=offset, gain=gain if gain != 0 else 200.0,
            baseline=adc_zero if baseline is None else baseline, units=units,
            adc_res=int(tok[3]) if len(tok) > 3 else 0, adc_zero=adc_zero,
            init=int(tok[5]) if len(tok) > 5 else None, checksum=int(tok[6]) if len(tok) > 6 else None,
            name=tok[8] if len(tok) > 8 else f"sig{len(signals)}"))
    return WfdbHeader(rec[0], fs, nsamp, signals, comments)


def _decode_212(raw: bytes, n: int) -> np.ndarray:
    """Format 212: two 12-bit two's-complement samples in 3 bytes. Byte 1's low nibble holds the
    high bits of the first sample, its high nibble those of the second."""
    b = np.frombuffer(raw + b"\0" * (-len(raw) % 3), dtype=np.uint8).reshape(-1, 3).astype(np.int16)
    out = np.empty(2 * len(b), dtype=np.int16)
    out[0::2] = b[:, 0] | ((b[:, 1] & 0x0F) << 8)
    out[1::2] = b[:, 2] | ((b[:, 1] & 0xF0) << 4)
    out[out >= 2048] -= 4096
    return out[:n]


def read_wfdb(record, physical: bool = True) -> tuple[np.ndarray, WfdbHeader]:
    """Read a WFDB record (`path/to/100`, with or without `.hea`): (C, T) array and its header.

    Formats 16 (little-endian int16) and 212 (packed 12-bit); several signals interleaved per
    file; byte offsets (`16+24`). physical=True gives float32 (digital - baseline) / gain in the
    header's units, with WFDB's invalid-sample code (-32768, -2048) as NaN; physical=False the
    digital int32 values.
    """
    record = Path(record)
    hea = record if record.suffix == ".hea" else record.with_name(record.name + ".hea")
    h = read_wfdb_header(hea)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(h.signals):
        groups.setdefault(s["file"], []).append(i)
    n = h.n_samples
    out_digital: list = [None] * len(h.signals)
    for fname, idx in groups.items():
        s0 = h.signals[idx[0]]
        fmt = s0["fmt"]
        if any(h.signals[i]["fmt"] != fmt for i in idx) or fmt not in ("16", "212"):
            raise UserError(f"{hea}: signal format {fmt} in {fname} is not supported (formats 16 and 212 are)")
        if any(h.signals[i]["spf"] != 1 or h.signals[i]["skew"] for i in idx):
            raise UserError(f"{hea}: multi-frequency or skewed signals are not supported")
        path = hea.with_name(fname)
        if not path.exists():
            raise UserError(f"{hea} names the signal file {fname}, which is not in {hea.parent}")
        with open(path, "rb") as fh:
            fh.seek(s0["offset"])
            raw = fh.read()
        k = len(idx)
        avail = len(raw) // 2 if fmt == "16" else (len(raw) * 2) // 3
        if n == 0:
            n = avail // k
        if avail < n * k:
            raise UserError(f"{path} holds {avail // k} samples per signal; the header says {n} (truncated?)")
        d = (np.frombuffer(raw, dtype="<i2", count=n * k) if fmt == "16" else _decode_212(raw, n * k))
        d = d.reshape(n, k).T
        for j, i in enumerate(idx):
            out_digital[i] = d[j]
    h.n_samples = n
    D = np.stack(out_digital).astype(np.int32)
    if not physical:
        return D, h
    invalid = np.array([-32768 if s["fmt"] == "16" else -2048 for s in h.signals])[:, None]
    base = np.array([s["baseline"] for s in h.signals], dtype=np.float64)[:, None]
    gain = np.array([s["gain"] for s in h.signals], dtype=np.float64)[:, None]
    X = ((D - base) / gain).astype(np.float32)
    X[D == invalid] = np.nan
    return X, h


# --------------------------------------------------------------------------- WFDB annotations
# MIT annotation codes -> mnemonics (WFDB ecgcodes.h); 15 and 17 are unused.
ANN_SYMBOLS = dict(enumerate(" NLRaVFJASEj/Q~", 0)) | {16: "|", 18: "s", 19: "T", 20: "*", 21: "D", 22: '"',
                                                       23: "=", 24: "p", 25: "B", 26: "^", 27: "t", 28: "+",
                                                       29: "u", 30: "?", 31: "!", 32: "[", 33: "]", 34: "e",
                                                       35: "n", 36: "@", 37: "x", 38: "f", 39: "(", 40: ")",
                                                       41: "r"}


@dataclass
class Annotations:
    sample: np.ndarray       # (K,) int64 sample index of each annotation
    symbol: list             # beat/label mnemonic ('N', 'A', '+', ...)
    aux: list                # auxiliary text ('(AFIB' for a rhythm change), '' when absent


def read_wfdb_annotations(path) -> Annotations:
    """Read a WFDB annotation file in MIT format (.atr, .apn, .qrs, ...).

    Each 16-bit little-endian word holds a 6-bit code A and a 10-bit field I. A = 1..49: an
    annotation I samples after the previous one. A = 59 (SKIP): the next two words are a 32-bit
    interval, high word first. A = 60/61/62 (NUM/SUB/CHN) modify the annotation before them; A = 63
    (AUX): I bytes of text follow, padded to an even count. The word 0 ends the file.
    """
    data = Path(path).read_bytes()
    w = np.frombuffer(data[: len(data) // 2 * 2], dtype="<u2")
    t, i, n = 0, 0, len(w)
    sample: list[int] = []
    symbol: list[str] = []
    aux: list[str] = []
    while i < n:
        word = int(w[i])
        code, val = word >> 10, word & 0x3FF
        if word == 0:
            break
        if code == 59:                                # SKIP: 32-bit interval, PDP-11 word order
            if i + 2 >= n:
                raise UserError(f"{path}: truncated SKIP at word {i}")
            t += np.int32(np.uint32((int(w[i + 1]) << 16) | int(w[i + 2]))).item()
            i += 3
        elif code == 63:                              # AUX text for the last annotation
            text = data[2 * i + 2: 2 * i + 2 + val].split(b"\0")[0].decode("latin-1")
            if aux:
                aux[-1] = text
            i += 1 + (val + 1) // 2
        elif code in (60, 61, 62):                    # NUM, SUB, CHN: not needed here
            i += 1
        else:
            t += val
            sample.append(t)
            symbol.append(ANN_SYMBOLS.get(code, f"#{code}"))
            aux.append("")
            i += 1
    return Annotations(np.array(sample, dtype=np.int64), symbol, aux)


# --------------------------------------------------------------------------- EDF / EDF+ reader
@dataclass
class EdfFile:
    labels: list             # signal labels, annotation signals excluded
    fs: dict                 # label -> samples per second
    signals: dict            # label -> (T,) float64 physical values (only the channels asked for)
    units: dict              # label -> physical dimension
    annotations: list        # EDF+ TALs: (onset s, duration s or None, text)
    record_duration: float
    n_records: int


def read_edf(path, channels=None) -> EdfFile:
    """Read an EDF or EDF+ file: the channels asked for (all when None) and every annotation.

    Layout: a 256-byte ASCII header, 256 bytes per signal (label 16, transducer 80, dimension 8,
    physical min/max 8+8, digital min/max 8+8, prefiltering 80, samples per record 8, reserved 32),
    then data records, each holding every signal's samples for one record as little-endian int16.
    physical = (digital - dmin) * (pmax - pmin) / (dmax - dmin) + pmin. 'EDF Annotations' signals
    hold time-stamped annotation lists: `+onset[\\x15duration]\\x14text\\x14...\\x14\\x00`.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(256)
        if len(head) < 256 or not head[:8].strip().isdigit() or not head[252:256].strip().isdigit():
            raise UserError(f"{path} is not an EDF file (bad 256-byte header)")
        ns = int(head[252:256])
        sh = fh.read(256 * ns)
    try:
        return _read_edf(path, head, sh, ns, channels)
    except (ValueError, IndexError) as e:
        raise UserError(f"{path}: malformed EDF header or data ({e}); is the file complete?") from None


def _read_edf(path: Path, head: bytes, sh: bytes, ns: int, channels) -> EdfFile:
    hdr_bytes = int(head[184:192])
    n_rec = int(head[236:244])
    rec_dur = float(head[244:252])

    def fld(base: int, width: int) -> list[str]:
        # header fields are stored field by field: all labels, then all transducers, ...; `base` is
        # the field's start in units of ns bytes (label 0, transducer 16, dimension 96, pmin 104,
        # pmax 112, dmin 120, dmax 128, prefiltering 136, samples per record 216, reserved 224)
        return [sh[base * ns + i * width: base * ns + (i + 1) * width].decode("latin-1").strip() for i in range(ns)]
    labels, dims = fld(0, 16), fld(96, 8)
    pmin, pmax, dmin, dmax = ([float(v) for v in fld(b, 8)] for b in (104, 112, 120, 128))
    nspr = [int(v) for v in fld(216, 8)]
    rec_len = sum(nspr)
    size = path.stat().st_size - hdr_bytes
    have = size // (2 * rec_len) if rec_len else 0
    n_rec = have if n_rec < 0 else min(n_rec, have)          # -1: unknown (recording not closed)
    data = np.memmap(path, dtype="<i2", mode="r", offset=hdr_bytes, shape=(n_rec, rec_len)) if n_rec else \
        np.zeros((0, rec_len), dtype="<i2")
    starts = np.concatenate([[0], np.cumsum(nspr)])
    is_ann = [lb == "EDF Annotations" for lb in labels]
    sig_labels = [lb for lb, a in zip(labels, is_ann) if not a]
    want = sig_labels if channels is None else list(channels)
    low = {lb.lower(): i for i, lb in enumerate(labels)}
    signals, fs, units = {}, {}, {}
    for i, lb in enumerate(labels):
        if not is_ann[i]:
            fs[lb] = nspr[i] / rec_dur if rec_dur > 0 else float("nan")
            units[lb] = dims[i]
    if want and head[192:197] == b"EDF+D":
        raise UserError(f"{path} is discontinuous EDF+ (EDF+D): its records are not back to back, so its "
                        "signals cannot be read as one series here; only its annotations can (channels=[]).")
    for lb in want:
        i = low.get(lb.lower())
        if i is None or is_ann[i]:
            raise UserError(f"{path} has no signal {lb!r}; it holds {sig_labels}")
        d = np.asarray(data[:, starts[i]:starts[i + 1]], dtype=np.float64).ravel()
        scale = (pmax[i] - pmin[i]) / (dmax[i] - dmin[i]) if dmax[i] != dmin[i] else 1.0
        signals[labels[i]] = (d - dmin[i]) * scale + pmin[i]
    annotations = []
    for i in np.flatnonzero(is_ann):
        raw = np.ascontiguousarray(data[:, starts[i]:starts[i + 1]]).tobytes()
        for tal in raw.split(b"\x00"):      # NULs end each TAL and pad the rest of the record
            if not tal:
                continue
            parts = tal.split(b"\x14")
            timing = parts[0].split(b"\x15")
            onset = float(timing[0])         # a malformed onset raises: reported as a malformed file
            dur = float(timing[1]) if len(timing) > 1 and timing[1] else None
            for text in parts[1:]:
                if text:                                   # the empty first text is the record's time stamp
                    annotations.append((onset, dur, text.decode("utf-8", errors="replace")))
    del data
    return EdfFile(sig_labels, fs, signals, units, annotations, rec_dur, n_rec)


# --------------------------------------------------------------------------- fetching raw files
def _raw_hint(name: str, url: str, folder: Path, page: str, what: str) -> str:
    via = f" (tried through the mirror as {mirrored(url)})" if mirrored(url) != url else ""
    return (f"Could not download {url}{via}.\nTo install {name} by hand, download {page} and put {what} into\n"
            f"  {folder}\n(or set TS_DATA_DIR to a folder holding raw/{name}/, or TS_DATA_MIRROR to a mirror).")


def _physionet_hint(name: str, url: str, db: str, version: str, folder: Path, paths: list[str]) -> str:
    shown = ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")
    return _raw_hint(name, url, folder, f"the files of https://physionet.org/content/{db}/{version}/",
                     f"them, keeping their sub-folders ({shown})")


def _physionet_listing(name: str, db: str, version: str, folder: Path, wanted: list[str]) -> dict:
    """{path: sha256} of every file of a PhysioNet database version (its published SHA256SUMS.txt)."""
    dest = folder / "SHA256SUMS.txt"
    if not dest.exists():
        url = f"{PHYSIONET}/{db}/{version}/SHA256SUMS.txt"
        try:
            download(url, dest, expect="any")
        except (DownloadError, OSError) as e:
            raise DownloadError(f"{e}\n" + _physionet_hint(name, url, db, version, folder, wanted)) from None
    out = {}
    for line in dest.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            out[parts[1].strip().lstrip("*")] = parts[0]
    if not out:
        dest.unlink(missing_ok=True)
        raise DownloadError(f"{name}: {dest.name} from PhysioNet lists no files; it was removed, try again.")
    return out


def _fetch_physionet(name: str, db: str, version: str, folder: Path, paths: list[str]) -> None:
    """Make sure the given database paths are in `folder`; each download is checked against the
    SHA-256 PhysioNet publishes for it. Files already there are used as they are."""
    import concurrent.futures
    import io

    missing = [p for p in paths if not (folder / p).exists()]
    if not missing:
        return
    with _locked(folder):
        missing = [p for p in paths if not (folder / p).exists()]
        if not missing:
            return
        sums = _physionet_listing(name, db, version, folder, missing)
        unknown = [p for p in missing if p not in sums]
        if unknown:
            raise DownloadError(f"{name}: {unknown[:5]} are not files of PhysioNet {db} {version}.")

        def one(p: str) -> None:
            url = f"{PHYSIONET}/{db}/{version}/{p}"
            dest = folder / p
            try:
                digest = download(url, dest, expect="any")
            except (DownloadError, OSError) as e:
                raise DownloadError(f"{e}\n" + _physionet_hint(name, url, db, version, folder, missing)) from None
            if digest != sums[p]:
                dest.unlink(missing_ok=True)
                raise DownloadError(f"{url}: SHA-256 {digest[:12]}... differs from PhysioNet's listing "
                                    f"({sums[p][:12]}...); the file was removed. Try again, or check the mirror.")

        err = sys.stderr
        quiet = len(missing) > 10           # many small files: one progress line, not one per file
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            with concurrent.futures.ThreadPoolExecutor(max_workers=8 if quiet else 1) as pool:
                futs = [pool.submit(one, p) for p in missing]
                try:
                    for k, fut in enumerate(concurrent.futures.as_completed(futs), 1):
                        fut.result()
                        if quiet and (k % 200 == 0 or k == len(missing)):
                            print(f"  {name}: {k}/{len(missing)} files", file=err, flush=True)
                except BaseException:
                    for f in futs:                 # first failure: do not start the rest
                        f.cancel()
                    raise


def _extract_matching(zpath: Path, member_re: re.Pattern, out_dir: Path, depth: int = 0) -> int:
    """Extract the members whose path matches member_re into out_dir (flat, by base name); a zip
    that holds none but holds zips is searched one level down (UCI nests PAMAP2's zip)."""
    with zipfile.ZipFile(zpath) as zf:
        names = zf.namelist()
        for nm in names:
            p = nm.replace("\\", "/")
            if p.startswith("/") or (len(p) > 1 and p[1] == ":") or ".." in p.split("/"):
                raise DownloadError(f"{zpath.name} holds an unsafe path {nm!r}; refusing to extract it.")
        members = [nm for nm in names if member_re.search(nm.replace("\\", "/"))]
        if not members and depth == 0:
            count = 0
            for inner in (nm for nm in names if nm.lower().endswith(".zip")):
                fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".inner.", suffix=".zip")
                try:
                    with os.fdopen(fd, "wb") as dst, zf.open(inner) as src:
                        shutil.copyfileobj(src, dst)
                    count += _extract_matching(Path(tmp), member_re, out_dir, depth + 1)
                finally:
                    os.unlink(tmp)
            return count
        bases = [m.replace("\\", "/").rsplit("/", 1)[-1] for m in members]
        if len(set(bases)) != len(bases):
            raise DownloadError(f"{zpath.name}: several members share a file name: {sorted(bases)[:6]}")
        tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".extract."))
        try:                                           # all members first, then move them into place
            for m, b in zip(members, bases):
                with open(tmp / b, "wb") as dst, zf.open(m) as src:
                    shutil.copyfileobj(src, dst)
            for b in bases:
                os.replace(tmp / b, out_dir / b)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return len(members)


def _fetch_zip_members(name: str, url: str, folder: Path, member_re: str, file_re: str, example: str) -> list[Path]:
    """Files named like file_re in folder (placed by hand or extracted before); else download the
    archive (a checked zip) and extract the members matching member_re."""
    def found():
        return sorted(p for p in folder.iterdir() if re.fullmatch(file_re, p.name)) if folder.is_dir() else []
    if found():
        return found()
    target = folder / urlsplit(url).path.rsplit("/", 1)[-1].replace("+", "_")
    with _locked(folder):
        if not found():
            if not target.exists():
                try:
                    download(url, target, expect="zip")
                except (DownloadError, OSError) as e:
                    raise DownloadError(f"{e}\n" + _raw_hint(name, url, folder, "that zip", f"it (as {target.name}), "
                                                            f"or the files like {example} taken from it,")) from None
            try:
                _extract_matching(target, re.compile(member_re), folder)
            except (zipfile.BadZipFile, zlib.error, OSError) as e:
                target.unlink(missing_ok=True)
                raise DownloadError(f"{target.name} could not be read ({e}); it was removed.") from None
    if not found():
        raise DownloadError(f"{name}: {target} holds no files matching {member_re!r}; is it the right archive?")
    return found()


# --------------------------------------------------------------------------- splits by subject
def _subject_holdout(subjects, fraction: float, seed: int) -> set:
    """A seeded random set of about `fraction` of the distinct subjects (at least one, never all)."""
    subs = sorted(set(subjects))
    if fraction <= 0 or len(subs) < 2:
        return set()
    k = min(max(1, int(round(fraction * len(subs)))), len(subs) - 1)
    rng = np.random.default_rng(seed)
    return {subs[i] for i in rng.choice(len(subs), size=k, replace=False)}


def _windowed(name, parts: dict, seed: int) -> Dataset:
    """parts: split -> (X, labels as strings, subject per window). Refuses a subject on two sides."""
    seen: dict = {}
    for split, (_, _, subj) in parts.items():
        for s in set(subj):
            if s in seen and seen[s] != split:
                raise UserError(f"{name}: subject {s} would be in both {seen[s]} and {split}")
            seen[s] = split
    (Xtr, ytr, _), (Xva, yva, _), (Xte, yte, _) = parts["train"], parts["val"], parts["test"]
    ds = _assemble(name, Xtr, ytr, Xte, yte, Xva, yva, seed=seed)
    return replace(ds, subjects={k: np.asarray(v[2]) for k, v in parts.items()})


def _split_blocks(blocks: list, val_subjects: set, test_subjects: set) -> dict:
    """blocks: [(X (k, C, L), labels (k,), subject)], one per recording. Returns split -> (X, labels,
    subject per window). The list is emptied as the splits are built, so the windows are held
    about once, not twice, in memory."""
    shape = blocks[0][0].shape[1:]
    side = lambda s: "test" if s in test_subjects else "val" if s in val_subjects else "train"  # noqa: E731
    out = {}
    for split in ("test", "val", "train"):
        mine = [b for b in blocks if side(b[2]) == split]
        blocks[:] = [b for b in blocks if side(b[2]) != split]
        X = np.concatenate([b[0] for b in mine]) if mine else np.zeros((0,) + shape, np.float32)
        y = np.array([v for b in mine for v in b[1]], dtype=object)
        out[split] = (X, y, np.array([b[2] for b in mine for _ in range(len(b[0]))], dtype=str))
        del mine
    return out


# --------------------------------------------------------------------------- Apnea-ECG (LEAVES)
def apnea_windows(ecg: np.ndarray, ann: Annotations, fs: float = 100.0) -> tuple[np.ndarray, list]:
    """One-minute windows starting at each per-minute label ('A' apnea, 'N' normal); a window that
    would run past the end of the recording is dropped. Returns (K, 1, 60 fs), labels."""
    L = int(round(60 * fs))
    keep = [(s, sym) for s, sym in zip(ann.sample.tolist(), ann.symbol) if sym in ("A", "N") and 0 <= s and s + L <= len(ecg)]
    X = np.stack([ecg[s:s + L] for s, _ in keep])[:, None, :] if keep else np.zeros((0, 1, L), np.float32)
    return X.astype(np.float32), ["apnea" if sym == "A" else "normal" for _, sym in keep]


def load_apnea_ecg(home: Path, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """PhysioNet apnea-ecg: 1-min single-lead ECG windows at 100 Hz, apnea vs normal.

    Train = the release's learning set (a, b, c records), test = its test set (x records); the
    validation records are a seeded `val_fraction` of the learning records. PhysioNet does not say
    which records (if any) come from the same person, so records stand in for subjects.
    """
    folder = home / "raw" / "Apnea-ECG"
    recs = APNEA_TRAIN + APNEA_TEST
    _fetch_physionet("Apnea-ECG", "apnea-ecg", APNEA_VERSION, folder,
                     [f"{r}.{e}" for r in recs for e in ("hea", "dat", "apn")])
    blocks = []
    for r in recs:
        sig, h = read_wfdb(folder / r)
        X, y = apnea_windows(sig[0], read_wfdb_annotations(folder / f"{r}.apn"), h.fs)
        blocks.append((X, y, r))
    val = _subject_holdout(APNEA_TRAIN, val_fraction, seed)
    return _windowed("Apnea-ECG", _split_blocks(blocks, val, set(APNEA_TEST)), seed)


# --------------------------------------------------------------------------- Sleep-EDF (LEAVES)
def sleep_epoch_labels(annotations: list, n_epochs: int, epoch: float = 30.0) -> np.ndarray:
    """Per-epoch stage names from hypnogram annotations (onset, duration, text); '' = unscored,
    unknown ('?') or movement. An annotation covers the epochs starting in [onset, onset + duration)."""
    lab = np.full(n_epochs, "", dtype=object)
    for onset, dur, text in annotations:
        stage = SLEEP_STAGES.get(text.strip())
        if stage is None or dur is None:
            continue
        a = int(np.ceil(onset / epoch - 1e-9))
        b = min(n_epochs, int(np.ceil((onset + dur) / epoch - 1e-9)))
        lab[a:b] = stage
    return lab


def sleep_keep(labels: np.ndarray, edge: int | None = None) -> np.ndarray:
    """Indices of the epochs kept: from `edge` epochs before the first sleep epoch to `edge` after
    the last (the wake-trimming of DeepSleepNet/TinySleepNet), scored epochs only."""
    edge = SLEEP_WAKE_EDGE if edge is None else edge
    sleep = np.flatnonzero(np.isin(labels, ["N1", "N2", "N3", "REM"]))
    if len(sleep) == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = max(0, sleep[0] - edge), min(len(labels) - 1, sleep[-1] + edge)
    idx = np.arange(lo, hi + 1)
    return idx[labels[idx] != ""]


def load_sleep_edf(home: Path, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """PhysioNet sleep-edfx, sleep-cassette subjects 0-19 (Sleep-EDF-20): Fpz-Cz EEG at 100 Hz in
    30-s epochs, five stages (W, N1, N2, N3 = R&K S3+S4, REM), at most 30 min of wake kept on each
    side of the night's sleep. Test = the last 25% of subjects by ID; validation = a seeded
    `val_fraction` of the other subjects."""
    folder = home / "raw" / "Sleep-EDF"
    pat = re.compile(r"(?:sleep-cassette/)?SC4(\d\d)(\d)E0-PSG\.edf")
    hyp = re.compile(r"(?:sleep-cassette/)?SC4(\d\d)(\d)E.-Hypnogram\.edf")
    def pairs(paths):
        psg = {m.group(1, 2): p for p in paths if (m := pat.fullmatch(p)) and int(m.group(1)) < SLEEP_EDF_SUBJECTS}
        hy = {m.group(1, 2): p for p in paths if (m := hyp.fullmatch(p))}
        return {k: (psg[k], hy[k]) for k in sorted(psg) if k in hy}
    local = [p.relative_to(folder).as_posix() for p in folder.rglob("SC4*.edf")] if folder.is_dir() else []
    if local and not (folder / "SHA256SUMS.txt").exists():
        nights = pairs(local)                          # placed by hand: used as they are
    else:                                              # the listing names the nights and hypnograms
        with _locked(folder):
            nights = pairs(list(_physionet_listing("Sleep-EDF", "sleep-edfx", SLEEP_EDF_VERSION, folder,
                                                   ["sleep-cassette/SC4001E0-PSG.edf", "sleep-cassette/SC4001EC-Hypnogram.edf"])))
        _fetch_physionet("Sleep-EDF", "sleep-edfx", SLEEP_EDF_VERSION, folder, [p for v in nights.values() for p in v])
    if not nights:
        raise UserError(f"Sleep-EDF: no sleep-cassette PSG/hypnogram pairs of subjects 0-{SLEEP_EDF_SUBJECTS - 1} "
                        f"found in {folder}")
    blocks = []
    for (subj, _night), (psg, hypno) in nights.items():
        edf = read_edf(folder / psg, ["EEG Fpz-Cz"])
        label = next(iter(edf.signals))
        if edf.fs[label] != 100:
            raise UserError(f"{psg}: EEG Fpz-Cz is sampled at {edf.fs[label]} Hz, expected 100 Hz")
        sig = edf.signals[label]
        n_ep = len(sig) // 3000
        lab = sleep_epoch_labels(read_edf(folder / hypno, []).annotations, n_ep)
        keep = sleep_keep(lab)
        blocks.append((sig[: n_ep * 3000].reshape(n_ep, 1, 3000)[keep].astype(np.float32), lab[keep].tolist(), subj))
    subs = sorted({b[2] for b in blocks})
    n_test = max(1, int(round(SLEEP_EDF_TEST_FRACTION * len(subs))))
    test = set(subs[-n_test:])
    val = _subject_holdout([s for s in subs if s not in test], val_fraction, seed)
    return _windowed("Sleep-EDF", _split_blocks(blocks, val, test), seed)


# --------------------------------------------------------------------------- PTB-XL (LEAVES)
def ptbxl_superclasses(scp_codes: dict, diagnostic_class: dict) -> list[str]:
    """The diagnostic superclasses of one record: those of its SCP codes that are diagnostic
    statements (any likelihood, as in the PTB-XL example code), sorted and unique."""
    return sorted({diagnostic_class[c] for c in scp_codes if c in diagnostic_class})


def load_ptbxl(home: Path, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """PhysioNet ptb-xl: 10-s 12-lead ECGs at 100 Hz (records100/), the records with exactly one of the
    five diagnostic superclasses (NORM, MI, STTC, CD, HYP). Split by the release's recommended
    patient-wise folds: strat_fold 1-8 train, 9 validation, 10 test (val_fraction is not used)."""
    import ast
    import csv

    folder = home / "raw" / "PTB-XL"
    _fetch_physionet("PTB-XL", "ptb-xl", PTBXL_VERSION, folder, ["ptbxl_database.csv", "scp_statements.csv"])
    with open(folder / "scp_statements.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    col = {c: i for i, c in enumerate(rows[0])}
    diag = {r[0]: r[col["diagnostic_class"]] for r in rows[1:]
            if r[col["diagnostic"]].strip() not in ("", "0", "0.0") and r[col["diagnostic_class"]] in PTBXL_SUPERCLASSES}
    with open(folder / "ptbxl_database.csv", newline="", encoding="utf-8") as fh:
        db = list(csv.DictReader(fh))
    need = {"scp_codes", "patient_id", "strat_fold", "filename_lr"}
    if not db or not need <= set(db[0]) or not {"diagnostic", "diagnostic_class"} <= set(col):
        raise UserError(f"PTB-XL: {folder}/ptbxl_database.csv needs columns {sorted(need)} and scp_statements.csv "
                        "the columns diagnostic, diagnostic_class; are these the PhysioNet files?")
    recs = []
    for r in db:
        classes = ptbxl_superclasses(ast.literal_eval(r["scp_codes"]), diag)
        if len(classes) == 1:
            recs.append((r["filename_lr"], classes[0], str(int(float(r["patient_id"]))), int(r["strat_fold"])))
    _fetch_physionet("PTB-XL", "ptb-xl", PTBXL_VERSION, folder, [f"{f}.{e}" for f, *_ in recs for e in ("hea", "dat")])
    split_of = lambda fold: "train" if fold <= 8 else "val" if fold == 9 else "test"   # noqa: E731
    recs.sort(key=lambda r: ["train", "val", "test"].index(split_of(r[3])))           # splits become slices
    X = np.empty((len(recs), 12, 1000), dtype=np.float32)
    for i, (f, *_) in enumerate(recs):
        x, _ = read_wfdb(folder / f)
        if x.shape != X.shape[1:]:
            raise UserError(f"PTB-XL {f}: shape {x.shape}, expected 12 leads x 1000 samples (10 s at 100 Hz)")
        X[i] = x
    parts, at = {}, 0
    for split in ("train", "val", "test"):
        mine = [r for r in recs if split_of(r[3]) == split]
        parts[split] = (X[at:at + len(mine)], np.array([r[1] for r in mine], dtype=object),
                        np.array([r[2] for r in mine], dtype=str))
        at += len(mine)
    return _windowed("PTB-XL", parts, seed)


# --------------------------------------------------------------------------- PAMAP2 (LEAVES)
def read_uci_text(path, n_cols: int) -> np.ndarray:
    """Whitespace-separated numbers ('NaN' allowed), n_cols per line -> (rows, n_cols) float64."""
    raw = Path(path).read_bytes()
    try:                                     # numpy's C parser; its text mode is not deprecated
        vals = np.fromstring(raw.decode("ascii", errors="replace"), sep=" ")
    except ValueError as e:
        raise UserError(f"{path}: not whitespace-separated numbers ({e})") from None
    rows = raw.rstrip().count(b"\n") + 1 if raw.strip() else 0
    if vals.size != rows * n_cols:
        raise UserError(f"{path}: expected {n_cols} numbers on each of {rows} lines, read {vals.size}")
    return vals.reshape(rows, n_cols)


def interpolate_nans(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over time (axis 0) of each column's NaNs; ends take the nearest value;
    a column with no value at all becomes 0."""
    x = x.copy()
    t = np.arange(len(x))
    for j in range(x.shape[1]):
        bad = np.isnan(x[:, j])
        if bad.all():
            x[:, j] = 0.0
        elif bad.any():
            x[bad, j] = np.interp(t[bad], t[~bad], x[~bad, j])
    return x


def activity_windows(labels: np.ndarray, length: int, stride: int) -> np.ndarray:
    """Start indices of windows of `length` lying inside one run of a constant label, every `stride`
    samples from the run's start."""
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts = []
    for a, b in zip(np.r_[0, edges], np.r_[edges, len(labels)]):
        starts.extend(range(a, b - length + 1, stride))
    return np.array(starts, dtype=np.int64)


def load_pamap2(home: Path, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """UCI PAMAP2 protocol recordings: 52 channels (heart rate + 3 IMUs x 17) at 100 Hz, NaNs linearly
    interpolated (heart rate 9 -> 100 Hz); 10-s windows every 3 s inside one activity; the 12 protocol
    activities. Subject 105 is validation, 106 test, the rest train (val_fraction is not used)."""
    folder = home / "raw" / "PAMAP2"
    files = _fetch_zip_members("PAMAP2", PAMAP2_URL, folder, r"(^|/)Protocol/subject1\d\d\.dat$", r"subject1\d\d\.dat",
                               "subject101.dat (from its Protocol folder)")
    blocks = []
    for f in files:
        a = read_uci_text(f, 54)
        act = a[:, 1].astype(np.int64)
        sig = interpolate_nans(a[:, 2:]).T.astype(np.float32)        # (52, T)
        del a
        act = np.where(np.isin(act, list(PAMAP2_ACTIVITIES)), act, 0)
        st = activity_windows(act, 1000, 300)
        st = st[act[st] != 0]
        X = np.stack([sig[:, s:s + 1000] for s in st]) if len(st) else np.zeros((0, 52, 1000), np.float32)
        blocks.append((X, [PAMAP2_ACTIVITIES[int(act[s])] for s in st], f.stem[-3:]))
    return _windowed("PAMAP2", _split_blocks(blocks, {PAMAP2_VAL}, {PAMAP2_TEST}), seed)


# --------------------------------------------------------------------------- continuous recordings (DynaCL)
@dataclass
class Recording:
    subject: str
    signals: np.ndarray      # (C, T) float32
    labels: np.ndarray       # (T,) int64 class id per sample, -1 = unlabelled


@dataclass
class Recordings:
    """Continuous recordings, split by subject: `train`, `val`, `test` lists of Recording. A subject
    may hold several recordings; each Recording is one continuous stretch (NaN samples mark gaps).
    split: "subject" (no subject in two splits), or "time" where the file holds one subject (each
    recording's first part trains, its last part tests)."""
    name: str
    fs: float
    channel_names: list
    class_names: list
    train: list
    val: list
    test: list
    split: str = "subject"

    def __repr__(self) -> str:
        n = lambda rs: f"{len(rs)} subjects, {sum(r.signals.shape[1] for r in rs) / self.fs / 3600:.1f} h"  # noqa: E731
        return (f"Recordings({self.name!r} at {self.fs:g} Hz, {len(self.channel_names)} channels, "
                f"{len(self.class_names)} classes: train {n(self.train)}; val {n(self.val)}; test {n(self.test)})")


def rhythm_labels(ann: Annotations, n: int, rhythms=AFDB_RHYTHMS) -> np.ndarray:
    """Per-sample class id of the rhythm in force: each rhythm annotation ('(AFIB', ...) holds until
    the next one. Before the first one, and for rhythms not in `rhythms`, the label is -1."""
    lab = np.full(n, -1, dtype=np.int64)
    marks = sorted((s, a.strip()[1:]) for s, a in zip(ann.sample.tolist(), ann.aux) if a.strip().startswith("("))
    for s, r in marks:                       # in time order, each overwrites everything after it
        lab[max(s, 0):] = rhythms.index(r) if r in rhythms else -1
    return lab


def read_harth_csv(path) -> tuple[np.ndarray, np.ndarray]:
    """One HARTH subject file -> (6, T) float32 back_x/y/z, thigh_x/y/z in g, and (T,) raw label codes.
    Columns are found by name (some files carry an extra index column)."""
    with open(path, encoding="utf-8") as fh:
        cols = [c.strip().strip('"') for c in fh.readline().split(",")]
    want = ["back_x", "back_y", "back_z", "thigh_x", "thigh_y", "thigh_z", "label"]
    if not set(want) <= set(cols):
        raise UserError(f"{path}: expected columns {want}, found {cols}")
    if "timestamp" in cols:                    # the loaders assume 50 Hz: check the first 200 time stamps
        import datetime
        import itertools
        with open(path, encoding="utf-8") as fh:
            stamps = [datetime.datetime.fromisoformat(ln.split(",")[cols.index("timestamp")].strip().strip('"'))
                      for ln in itertools.islice(fh, 1, 201) if ln.strip()]
        if len(stamps) > 2:
            step = float(np.median(np.diff([t.timestamp() for t in stamps])))
            if abs(step - 0.02) > 0.002:
                raise UserError(f"{path}: samples are {step * 1000:.1f} ms apart; HARTH is 50 Hz (20 ms)")
    try:
        a = np.loadtxt(path, delimiter=",", skiprows=1, usecols=[cols.index(c) for c in want], dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise UserError(f"{path}: cannot read the values ({e})") from None
    return a[:, :6].T.astype(np.float32), a[:, 6].astype(np.int64)


def _load_harth(home: Path) -> tuple[list, dict]:
    folder = home / "raw" / "HARTH"
    files = _fetch_zip_members("HARTH", HARTH_URL, folder, r"(^|/)S\d{3}\.csv$", r"S\d{3}\.csv", "S006.csv")
    codes = list(HARTH_CODES)
    lut = np.full(max(codes) + 1, -1, dtype=np.int64)
    lut[codes] = np.arange(len(codes))
    recs = []
    for f in files:
        sig, code = read_harth_csv(f)
        lab = np.where((code >= 0) & (code < len(lut)), lut[np.clip(code, 0, len(lut) - 1)], -1)
        recs.append(Recording(f.stem, sig, lab))
    return recs, dict(fs=50.0, channel_names=["back_x", "back_y", "back_z", "thigh_x", "thigh_y", "thigh_z"],
                      class_names=list(HARTH_CODES.values()))


def _load_afdb(home: Path) -> tuple[list, dict]:
    folder = home / "raw" / "AFDB"
    _fetch_physionet("AFDB", "afdb", AFDB_VERSION, folder, [f"{r}.{e}" for r in AFDB_RECORDS for e in ("hea", "dat", "atr")])
    recs, names = [], None
    for r in AFDB_RECORDS:
        sig, h = read_wfdb(folder / r)
        if h.fs != 250:
            raise UserError(f"AFDB {r}: {h.fs} Hz, expected 250 Hz")
        names = names or [s["name"] for s in h.signals]
        recs.append(Recording(r, sig, rhythm_labels(read_wfdb_annotations(folder / f"{r}.atr"), sig.shape[1])))
    return recs, dict(fs=250.0, channel_names=names, class_names=list(AFDB_RHYTHMS))


def _sample_labels(values, path) -> tuple[np.ndarray, list]:
    """Per-sample labels of a user's recording -> (class id per sample, -1 = unlabelled; class names).
    Numbers: negative = unlabelled, classes in numeric order. Text: '' = unlabelled, classes sorted."""
    v = np.asarray(values)
    if v.dtype.kind in "iub" or (v.dtype.kind == "f" and np.all(np.isnan(v) | (v == np.round(v)))):
        f = v.astype(np.float64)
        ok = np.isfinite(f) & (f >= 0)
        classes = np.unique(f[ok])
        ids = np.full(len(f), -1, dtype=np.int64)
        ids[ok] = np.searchsorted(classes, f[ok])
        return ids, [str(int(c)) for c in classes]
    if v.dtype.kind not in "US":
        raise UserError(f"{path}: labels must be integers (negative = unlabelled) or text ('' = unlabelled), "
                        f"got {v.dtype}")
    t = np.char.strip(v.astype(str))
    try:                                       # text that holds integers ("1", "13", "-1"): numeric order
        return _sample_labels(np.where(t == "", "-1", t).astype(np.int64), path)
    except ValueError:
        pass
    classes = np.unique(t[t != ""])
    ids = np.where(t == "", -1, np.searchsorted(classes, t)).astype(np.int64)
    return ids, classes.tolist()


def _pieces(signals: np.ndarray, labels: np.ndarray, subjects: np.ndarray, breaks: np.ndarray) -> list:
    """Cut one long (C, T) array into Recordings: a new recording starts where the subject id
    changes or breaks[t] is True (a gap before sample t)."""
    start = np.flatnonzero(np.r_[True, (subjects[1:] != subjects[:-1]) | breaks[1:]])
    edges = np.r_[start, len(labels)]
    return [Recording(str(subjects[a]), np.ascontiguousarray(signals[:, a:b]), labels[a:b])
            for a, b in zip(edges[:-1], edges[1:])]


def read_recording_file(path) -> tuple[list, dict]:
    """A user's continuous recording (DynaCL's own kind of input), from a .npz or a .csv file.

    .npz  signal (C, T) or (T,) float, labels (T,) per sample (integers, negative = unlabelled; or
          text, '' = unlabelled), fs (sampling rate in Hz); optional subject (T,) per-sample
          subject ids (a new recording starts wherever the id changes), channel_names (C,),
          class_names (K,) for integer labels 0..K-1. NaN samples mark gaps (missing data).
    .csv  a header row; columns `label` (empty = unlabelled), a time column `time` (seconds) or
          `timestamp` (ISO date-time: 2019-01-12 00:00:00.020), optional `subject`; every other
          column is a channel. fs = 1 / the median time step; a step over 1.5 times it is a gap.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    layout = ("a continuous recording needs signal (C, T), labels (T,) per sample and fs (Hz); "
              "see data.read_recording_file")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                z = {k: npz[k] for k in npz.files}
        except (ValueError, OSError, zipfile.BadZipFile) as e:
            raise UserError(f"{path} is not a readable .npz archive of plain arrays ({e})") from None
        missing = [k for k in ("signal", "labels", "fs") if k not in z]
        if missing:
            raise UserError(f"{path}: no {', '.join(missing)} array; found {sorted(z)}. {layout}")
        sig = np.asarray(z["signal"])
        if sig.dtype.kind not in "iuf":
            raise UserError(f"{path}: signal must hold numbers, got {sig.dtype}")
        sig = sig[None] if sig.ndim == 1 else sig
        if sig.ndim != 2:
            raise UserError(f"{path}: signal must be (C, T) or (T,), got shape {sig.shape}")
        if sig.shape[0] > sig.shape[1]:
            raise UserError(f"{path}: signal is {sig.shape}: more channels than samples. It must be (C, T), "
                            f"channels first; save signal.T")
        try:
            fs = float(np.asarray(z["fs"]).reshape(-1)[0]) if np.asarray(z["fs"]).size == 1 else float("nan")
        except (TypeError, ValueError):
            fs = float("nan")
        n = sig.shape[1]
        subj = np.asarray(z.get("subject", np.zeros(n, dtype=np.int64)))
        labels_raw, breaks = np.asarray(z["labels"]), np.zeros(n, dtype=bool)
        channel_names = [str(c) for c in z.get("channel_names", [f"ch{i}" for i in range(sig.shape[0])])]
    elif path.suffix == ".csv":
        with open(path, encoding="utf-8") as fh:
            cols = [c.strip().strip('"') for c in fh.readline().split(",")]
        time_col = next((c for c in ("time", "timestamp") if c in cols), None)
        if "label" not in cols or time_col is None:
            raise UserError(f"{path}: a recording CSV needs a `label` column and a `time` (seconds) or "
                            f"`timestamp` column; found {cols}")
        channel_names = [c for c in cols if c not in ("label", "subject", time_col) and c]
        if not channel_names:
            raise UserError(f"{path}: no signal columns besides {cols}")
        try:
            sig = np.loadtxt(path, delimiter=",", skiprows=1, usecols=[cols.index(c) for c in channel_names],
                             dtype=np.float64, ndmin=2, quotechar='"').T
            text = np.loadtxt(path, delimiter=",", skiprows=1, dtype=str, ndmin=2, quotechar='"',
                              usecols=[cols.index(c) for c in (time_col, "label", "subject") if c in cols])
            t = (text[:, 0].astype(np.float64) if time_col == "time" else
                 (np.char.strip(text[:, 0]).astype("datetime64[us]") - np.datetime64(0, "us")).astype(np.float64) / 1e6)
        except ValueError as e:
            raise UserError(f"{path}: cannot read the values ({e})") from None
        labels_raw, n = text[:, 1], sig.shape[1]
        subj = text[:, 2] if "subject" in cols else np.zeros(n, dtype=np.int64)
        step = np.diff(t)
        if n < 2 or not np.all(np.isfinite(step)) or np.median(step) <= 0:
            raise UserError(f"{path}: the {time_col} column must increase (found {n} rows)")
        same = np.r_[False, subj[1:] == subj[:-1]]
        fs = 1.0 / float(np.median(step[same[1:]])) if same[1:].any() else float("nan")
        bad = same[1:] & ((step <= 0) | (step > 1.5 / fs))
        breaks = np.r_[False, bad]                     # a gap (or a backwards step) starts a new recording
    else:
        raise UserError(f"{path}: a recording must be a .npz or a .csv file ({layout})")
    if not (np.isfinite(fs) and fs > 0):
        raise UserError(f"{path}: fs (the sampling rate in Hz) must be one positive number")
    if len(labels_raw) != n or len(subj) != n:
        raise UserError(f"{path}: signal has {n} samples but labels has {len(labels_raw)}"
                        + (f" and subject {len(subj)}" if len(subj) != n else ""))
    if np.isinf(sig).any():
        raise UserError(f"{path}: signal holds +-inf values; use NaN for missing samples")
    if len(channel_names) != sig.shape[0]:
        raise UserError(f"{path}: {len(channel_names)} channel_names for {sig.shape[0]} channels")
    if n < 2:
        raise UserError(f"{path}: the recording holds {n} samples")
    if path.suffix == ".npz" and "class_names" in z:         # integer labels 0..K-1 named by class_names
        class_names = [str(c) for c in z["class_names"]]
        lab = np.asarray(labels_raw)
        if lab.dtype.kind not in "iu" or lab.max() >= len(class_names):
            raise UserError(f"{path}: with class_names ({len(class_names)} names) labels must be integers "
                            f"0..{len(class_names) - 1} (negative = unlabelled)")
        labels = np.where(lab >= 0, lab, -1).astype(np.int64)
    else:
        labels, class_names = _sample_labels(labels_raw, path)
    if len(class_names) < 2:
        raise UserError(f"{path}: the labels hold {len(class_names)} class(es); evaluation needs at least two")
    recs = _pieces(sig.astype(np.float32), labels, np.asarray(subj).astype(str), breaks)
    return recs, dict(fs=fs, channel_names=channel_names, class_names=class_names)


def is_recordings(name) -> bool:
    """True for the continuous-recording sets (HARTH, AFDB) and a user's recording file: any .csv,
    or a .npz holding a `signal` array (a .npz of windows holds X_train, ... instead)."""
    s = str(name)
    if s.endswith(".csv"):
        return True
    if s.endswith(".npz"):
        try:
            with np.load(Path(s).expanduser(), allow_pickle=False) as npz:
                return "signal" in npz.files
        except (ValueError, OSError, zipfile.BadZipFile):
            return False                       # load_dataset reports what is wrong with it
    if os.sep in s:
        return False
    try:
        return _resolve_name(s) in ("HARTH", "AFDB")
    except UserError:
        return False


def _split_in_time(recs: list, fraction: float) -> tuple[list, list]:
    """Each recording's first (1 - fraction) of samples, and its last `fraction` (at least one sample each)."""
    head, tail = [], []
    for r in recs:
        n = r.signals.shape[1]
        cut = min(max(1, int(round((1 - fraction) * n))), n - 1) if n > 1 else n
        head.append(Recording(r.subject, r.signals[:, :cut], r.labels[:cut]))
        if cut < n:
            tail.append(Recording(r.subject, r.signals[:, cut:], r.labels[cut:]))
    return head, tail


def load_recordings(name: str, data_dir=None, test_fraction: float = 0.2, val_fraction: float = 0.0,
                    seed: int = 0) -> Recordings:
    """Continuous labelled recordings per subject, for methods that frame them themselves (DynaCL).

    HARTH: 6 accelerometer channels at 50 Hz, 12 activities. AFDB: 2 ECG leads at 250 Hz, rhythm
    labels AFIB, AFL, J, N per sample. A path: a user's .npz / .csv recording (read_recording_file).
    Subjects sorted by ID: the last `test_fraction` of the subjects are test (as DynaCL's 80/20);
    `val_fraction` of the remaining subjects, drawn with `seed`, are validation. Where only one
    subject is left for training, validation is the last `val_fraction` of each of its recordings;
    where the file holds one subject, each recording's last `test_fraction` is test (split="time").
    """
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1:
        raise UserError(f"test_fraction must be in (0, 1) and val_fraction in [0, 1); got {test_fraction}, {val_fraction}")
    if str(name).endswith((".npz", ".csv")):
        recs, meta = read_recording_file(name)
        name = Path(name).stem
    else:
        name = _resolve_name(name)
        if name not in ("HARTH", "AFDB"):
            raise UserError(f"{name} is not a continuous-recording dataset (HARTH, AFDB or a .npz / .csv "
                            f"recording are); use load_dataset({name!r})")
        recs, meta = (_load_harth if name == "HARTH" else _load_afdb)(data_home(data_dir))
    recs = sorted(recs, key=lambda r: r.subject)                # stable: a subject's recordings keep their order
    subjects = sorted({r.subject for r in recs})
    split = "subject"
    if len(subjects) >= 2:
        n_test = min(max(1, int(round(test_fraction * len(subjects)))), len(subjects) - 1)
        test_s = set(subjects[-n_test:])
        test, rest = [r for r in recs if r.subject in test_s], [r for r in recs if r.subject not in test_s]
    elif str(name) in ("HARTH", "AFDB") or not recs:
        raise UserError(f"{name}: {len(recs)} recording found; a subject split needs at least two")
    else:
        split = "time"
        rest, test = _split_in_time(recs, test_fraction)
    val_s = _subject_holdout([r.subject for r in rest], val_fraction, seed)
    if val_s:
        train, val = [r for r in rest if r.subject not in val_s], [r for r in rest if r.subject in val_s]
    elif val_fraction > 0:                                     # one training subject: a block at the end
        train, val = _split_in_time(rest, val_fraction)
    else:
        train, val = rest, []
    return Recordings(name, meta["fs"], meta["channel_names"], meta["class_names"], train, val, test, split)


def _recordings_only(name):
    def loader(home, val_fraction=0.2, seed=0):
        raise UserError(f"{name} is a set of continuous recordings, not of windows: use "
                        f"data.load_recordings({name!r}) (DynaCL frames them itself).")
    return loader


RAW["Apnea-ECG"]["loader"] = load_apnea_ecg
RAW["Sleep-EDF"]["loader"] = load_sleep_edf
RAW["PTB-XL"]["loader"] = load_ptbxl
RAW["PAMAP2"]["loader"] = load_pamap2
RAW["HARTH"]["loader"] = _recordings_only("HARTH")
RAW["AFDB"]["loader"] = _recordings_only("AFDB")
# =========================================================================== end of raw recordings


if __name__ == "__main__":
    # python data.py GunPoint [data_dir]   downloads (if needed) and prints a summary
    if len(sys.argv) < 2:
        print(f"usage: python data.py NAME [DATA_DIR]   ({len(list_datasets())} names: data.list_datasets())")
        sys.exit(1)
    try:
        print(load_dataset(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
    except (UserError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
