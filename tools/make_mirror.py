"""Build a local mirror of the dataset hosts from a folder of real files laid out as data.py's
cache (ucr_uea/<Name>/*.ts, tfc/<Name>/{train,val,test}.pt). The default folder is tests/data, the
small real files shipped with the project; pass another (your cache, say) as the second argument.

    python tools/make_mirror.py /tmp/mirror [FOLDER]
    python -m http.server 8765 --bind 127.0.0.1 --directory /tmp/mirror &
    TS_DATA_MIRROR=http://127.0.0.1:8765 python data.py GunPoint

Each UCR/UEA problem becomes <host>/aeon-toolkit/<Name>.zip and each complete TF-C release
<host>/ndownloader/articles/<id>/versions/<v>, the paths data.py asks the real hosts for.
"""
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import data  # noqa: E402


def build(out: Path, shared: Path) -> list[str]:
    made = []
    for folder in sorted((shared / "ucr_uea").iterdir()):
        url = urlsplit(f"https://timeseriesclassification.com/aeon-toolkit/{folder.name}.zip")
        dest = out / url.netloc / url.path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(folder.glob("*.ts")):
                zf.write(f, f.name)
        made.append(folder.name)
    for name, (url, sub) in data.TFC.items():
        src = shared / "tfc" / sub
        if not all((src / f"{s}.pt").exists() for s in ("train", "val", "test")):
            continue
        u = urlsplit(url)
        dest = out / u.netloc / u.path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(dest, "w") as zf:
            for s in ("train", "val", "test"):
                zf.write(src / f"{s}.pt", f"{s}.pt")
        made.append(name)
    return made


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "mirror")
    shared = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[1] / "tests" / "data"
    print(f"mirror of {', '.join(build(out, shared))} in {out}")
