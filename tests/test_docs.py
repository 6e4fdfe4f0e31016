"""The docs hold: every relative link in README.md, docs/*.md and benchmarks/README.md reaches an
existing file (and heading, for a #fragment), and every command they show names a file that exists
and only flags that file accepts.

Flags are checked against the real parsers where that is cheap and has no side effects: a method
file's `Args` through `common.parse_args` itself (flag names and value types), `data.py`'s own
usage (NAME [DATA_DIR], NAME a registered dataset), and a benchmark script's flags read from its
source (its `Args` dataclass, `add_argument` calls and `"--x" in sys.argv` tests), since importing
a benchmark can start work. No network, a few seconds.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import io
import re
import shlex
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("ts2vec_adaptive", "dynacl", "leaves", "aimts")


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if (ROOT / "benchmarks" / "README.md").exists():
        files.append(ROOT / "benchmarks" / "README.md")
    return files


DOCS = doc_files()
FENCE = re.compile(r"^(```|~~~)")


def split_fences(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(prose lines with fenced blocks blanked, [(info string, block text)])."""
    prose, blocks, info, buf = [], [], None, []
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            if info is None:
                info, buf = line.strip()[3:].strip().lower(), []
            else:
                blocks.append((info, "\n".join(buf)))
                info = None
            prose.append("")
        elif info is None:
            prose.append(line)
        else:
            buf.append(line)
            prose.append("")
    return prose, blocks


INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def links(path: Path) -> list[str]:
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    text = INLINE_CODE.sub("", "\n".join(prose))        # a link written inside `code` is not a link
    return LINK.findall(text)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)       # links keep their text
    text = text.replace("`", "").strip().lower()
    kept = [c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM"]
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for line in prose:
        m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = github_slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def check_link(doc: Path, target: str) -> str | None:
    """None if the link resolves, else what is wrong."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):         # http:, https:, mailto:
        return None
    path, _, fragment = target.partition("#")
    dest = (doc.parent / path).resolve() if path else doc
    if not dest.exists():
        return f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}"
    if fragment and dest.suffix == ".md":
        if fragment.lower() not in anchors(dest):
            return f"{target}: no heading with anchor #{fragment} in {dest.relative_to(ROOT)}"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    bad = [msg for t in links(doc) if (msg := check_link(doc, t))]
    assert not bad, f"{doc.relative_to(ROOT)}: broken links:\n  " + "\n  ".join(bad)


# --------------------------------------------------------------------------- commands
def commands(path: Path) -> list[list[str]]:
    """Every shell command in a fenced bash/sh/plain block or an inline code span, as tokens."""
    prose, blocks = split_fences(path.read_text(encoding="utf-8"))
    sources = [b for info, b in blocks if info in ("", "bash", "sh", "shell", "console")]
    sources += [m.group(2) for line in prose for m in INLINE_CODE.finditer(line)]
    out = []
    for src in sources:
        src = src.replace("\\\n", " ")
        for line in src.splitlines():
            for part in re.split(r"&&|\|\||;|\|(?!\|)", line):
                try:
                    toks = shlex.split(part, comments=True)
                except ValueError:                      # an unbalanced quote: prose, not a command
                    continue
                while toks and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", toks[0]):
                    toks = toks[1:]                     # VAR=value prefixes
                if toks and toks[-1] == "&":
                    toks = toks[:-1]
                if toks:
                    out.append(toks)
    return out


def script_call(toks: list[str]) -> tuple[str, list[str]] | None:
    """('file.py', argv) for `python file.py ...` or `torchrun [opts] file.py ...`, else None."""
    if toks[0] in ("python", "python3"):
        if len(toks) < 2 or toks[1].startswith("-"):
            return None                                  # python -m / -c
        return toks[1], toks[2:]
    if toks[0] == "torchrun":
        for i, t in enumerate(toks[1:], 1):
            if t.endswith(".py"):
                return t, toks[i + 1:]
    return None


def flags_of(argv: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def dataclass_flags(fields) -> set[str]:
    """common.parse_args's rules: --field-name and --field_name; booleans also --no-<each>."""
    out = set()
    for name, is_bool in fields:
        names = {f"--{name.replace('_', '-')}", f"--{name}"}
        out |= names
        if is_bool:
            out |= {"--no-" + n[2:] for n in names}
    return out


def benchmark_flags(path: Path) -> set[str]:
    """Flags a benchmark script accepts, read from its source without running it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = {"--help", "-h"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Args":
            out |= dataclass_flags(
                (st.target.id, isinstance(st.annotation, (ast.Name, ast.Constant))
                 and getattr(st.annotation, "id", getattr(st.annotation, "value", None)) == "bool")
                for st in node.body if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            out |= {a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("-")}
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) \
                and str(node.left.value).startswith("--") and "argv" in ast.unparse(node.comparators[0]):
            out.add(node.left.value)                     # "--threads" in sys.argv
    return out


def method_error(module: str, argv: list[str]) -> str | None:
    """Parse argv with the method file's own Args and common.parse_args; None if it parses."""
    import common
    mod = importlib.import_module(module)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            common.parse_args(mod.Args, argv)
    except SystemExit as e:
        if e.code:
            return err.getvalue().strip().splitlines()[-1]
    return None


def check_command(toks: list[str]) -> str | None:
    """None if the command names existing files and only flags they accept, else what is wrong."""
    cmd = " ".join(toks)
    if toks[0] in ("python", "python3") and toks[1:3] == ["-m", "pytest"]:
        missing = [t for t in toks[3:] if t.startswith("tests") and not (ROOT / t.split("::")[0]).exists()]
        return f"{cmd}: no {missing}" if missing else None
    call = script_call(toks)
    if call is None:
        return None
    script, argv = call
    if "$" in script or "<" in script:
        return None
    path = ROOT / script
    if not path.exists():
        return f"{cmd}: no file {script}"
    if path.parent == ROOT and path.stem in METHODS:
        msg = method_error(path.stem, argv)
        return f"{cmd}: {msg}" if msg else None
    if path == ROOT / "data.py":
        import data
        if flags_of(argv) or len(argv) > 2:
            return f"{cmd}: data.py takes NAME [DATA_DIR] and no flags"
        if argv and argv[0] not in {*data.list_datasets(), *data.RAW} and not Path(argv[0]).suffix:
            return f"{cmd}: {argv[0]!r} is not a dataset name data.py knows"
        return None
    if path.parent == ROOT / "benchmarks":
        unknown = sorted(set(flags_of(argv)) - benchmark_flags(path))
        return f"{cmd}: {script} has no flag {unknown}" if unknown else None
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_name_existing_files_and_flags(doc):
    bad = [msg for toks in commands(doc) if (msg := check_command(toks))]
    assert not bad, f"{doc.relative_to(ROOT)}:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize("method", METHODS)
def test_flags_named_on_a_method_page_exist(method):
    """A flag written alone in `code` on docs/<method>.md (`--negatives`, `--measure probe`) is one
    of that method file's flags, or of its benchmark scripts'."""
    page = ROOT / "docs" / f"{method}.md"
    if not page.exists():
        pytest.skip(f"no {page.name}")
    mod = importlib.import_module(method)
    ok = dataclass_flags((f.name, f.type in (bool, "bool")) for f in dataclasses.fields(mod.Args))
    for bench in (ROOT / "benchmarks").glob(f"bench_{method}*.py"):
        ok |= benchmark_flags(bench)
    prose, _ = split_fences(page.read_text(encoding="utf-8"))
    named = {m.group(2).split()[0].split("=")[0] for line in prose for m in INLINE_CODE.finditer(line)
             if m.group(2).startswith("--")}
    named = {n for f in named for n in f.split("/") if n.startswith("--")}
    assert named <= ok, f"docs/{method}.md names flags {method}.py does not have: {sorted(named - ok)}"


def test_readme_keeps_the_curves_markers_and_the_ci_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines.count("<!-- curves:begin -->") == 1 and lines.count("<!-- curves:end -->") == 1
    begin, end = lines.index("<!-- curves:begin -->"), lines.index("<!-- curves:end -->")
    heading = [ln for ln in lines[:begin] if ln.startswith("## ")][-1]
    assert begin < end and heading == "## Does pre-training help?"
    assert "python -m pytest -q tests/" in text and "pip install -r requirements-dev.txt" in text
    assert len(lines) < 250


# --------------------------------------------------------------------------- the checker itself
def test_checker_catches_a_broken_link_a_bad_anchor_and_a_bogus_flag(tmp_path):
    readme = ROOT / "README.md"
    assert check_link(readme, "docs/datasets.md#names") is None
    assert check_link(readme, "docs/no_such_page.md") is not None
    assert check_link(readme, "docs/datasets.md#no-such-heading") is not None
    assert check_command(["python", "dynacl.py", "--dataset", "HAR", "--negatives", "sequence"]) is None
    assert "--bogus-flag" in check_command(["python", "dynacl.py", "--bogus-flag", "1"])
    assert check_command(["python", "leaves.py", "--epochs", "many"]) is not None      # wrong type
    assert check_command(["python", "aimts.py", "--no-paper-sizes"]) is None
    assert check_command(["python", "no_such_file.py"]) is not None
    assert check_command(["python", "data.py", "GunPoint"]) is None
    assert check_command(["python", "data.py", "NoSuchSet"]) is not None
    assert check_command(["python", "benchmarks/bench_aimts.py", "--parts", "raster"]) is None
    assert check_command(["python", "benchmarks/bench_aimts.py", "--bogus"]) is not None
    assert check_command(["python", "benchmarks/bench_ts2vec_adaptive.py", "--no-fixed-floor"]) is None
    assert check_command(["python", "benchmarks/bench_dynacl_recordings.py", "--threads", "2"]) is None
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n[ok](#a-page) [bad](missing.md)\n\n```bash\npython dynacl.py --nope\n```\n")
    assert [check_link(page, t) is None for t in links(page)] == [True, False]
    assert any("--nope" in (check_command(t) or "") for t in commands(page))


def test_github_slugs():
    assert github_slug("`ts2vec_adaptive.py`: TS2Vec, with the loss") == "ts2vec_adaptivepy-ts2vec-with-the-loss"
    assert github_slug("Default SleepEEG pipeline on a synthetic array of the release's shape (371,055 x 200)") \
        == "default-sleepeeg-pipeline-on-a-synthetic-array-of-the-releases-shape-371055-x-200"
    assert github_slug("Does pre-training help?") == "does-pre-training-help"
