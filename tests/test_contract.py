"""The contract every method file keeps (/work/notes/CONTRACT.md, issue 14), so the four files stay
comparable side by side, checked from the outside through each file's REAL `main` on tiny real data
(tests/data): which split reaches which step, what pre-training reads, what the random-init baseline
is, what fine-tuning trains, where every default comes from, and the shared linear probe as behaviour.

Each check names the wrong version it exists to catch. A file that does not keep the contract fails
here with every problem listed at once (checks collect their findings before asserting).
"""
import contextlib
import dataclasses
import hashlib
import importlib
import inspect
import io
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import data

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data"
METHODS = [m for m in ("ts2vec_adaptive", "dynacl", "aimts", "leaves") if (ROOT / f"{m}.py").exists()]
COMMON_FIELDS = {"dataset", "data_dir", "seed", "batch_size", "lr", "epochs", "device", "out_dir", "save_model"}
TIMING = re.compile(r"(time|_s$|per_s|peak_memory|run_dir|versions)")   # CONTRACT A: keys the comparison ignores
TEST_ARG = re.compile(r"(^|_)(te|test)($|_)")                            # x_te, y_te, x_test, test ...
SELECTED_IN_EVAL = re.compile(r"(^C$|_C$|epoch|(^|_)val_|(^|_)log$)")    # chosen on validation: belongs in selection
FINETUNING = {"leaves", "aimts"}                                         # CONTRACT E


@pytest.mark.parametrize("name", METHODS)
def test_method_file_exposes_the_shared_names(name):
    m = importlib.import_module(name)
    for attr in ("Args", "Encoder", "pretrain", "embed", "linear_eval", "main"):
        assert hasattr(m, attr), f"{name}.py has no {attr}"
    fields = {f.name for f in dataclasses.fields(m.Args)}
    assert COMMON_FIELDS <= fields, f"{name}.Args lacks {COMMON_FIELDS - fields}"
    for f in dataclasses.fields(m.Args):
        assert f.metadata.get("help"), f"{name}.Args.{f.name} has no help text"


@pytest.mark.skipif(not METHODS, reason="no method file yet")
def test_linear_eval_is_identical_in_every_method_file():
    sources = {n: inspect.getsource(importlib.import_module(n).linear_eval) for n in METHODS}
    assert len(set(sources.values())) == 1, f"linear_eval differs between {sorted(sources)}"
    for n in METHODS:
        assert "SHARED PROTOCOL" in (inspect.getcomments(importlib.import_module(n).linear_eval) or "")


_CLI_SCRIPT = """
import runpy, sys
import {name}
print("<<imported>>", flush=True)

def run(argv):
    sys.argv = ["{name}.py"] + argv
    try:
        runpy.run_path("{name}.py", run_name="__main__")
    except SystemExit as e:
        return e.code
    return 0

print("<<help exit", run(["--help"]), ">>", flush=True)
print("<<bad input>>", file=sys.stderr, flush=True)
print("<<bad exit", run(["--dataset", "GunPiont"]), ">>", flush=True)
"""


@pytest.mark.parametrize("name", METHODS)
def test_import_is_silent_help_works_and_bad_input_is_one_error_line(name):
    """One python process per file (each costs a torch import): importing prints nothing; `--help`
    lists the flags and exits 0; a misspelt dataset through the real `__main__` is one `error:` line
    naming the fix, exit status 2, no traceback."""
    out = subprocess.run([sys.executable, "-c", _CLI_SCRIPT.format(name=name)], cwd=ROOT, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    before, _, after = out.stdout.partition("<<imported>>\n")
    assert before == "", f"importing {name} printed {before!r}"
    helptext, _, rest = after.partition("<<help exit 0 >>\n")
    assert rest and "--dataset" in helptext and "--device" in helptext, out.stdout
    assert "<<bad exit 2 >>" in rest, out.stdout
    err = out.stderr.partition("<<bad input>>\n")[2].strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "GunPoint" in err, err                                       # names the fix


# =========================================================================== running the real main
# Per-file adapters: the tiniest run of each file's real main on real data from tests/data, every
# stage the file has switched on (random-init probe, fine-tuning, scratch baseline), encoder.pt saved.
CASES = {
    "ts2vec_adaptive": ("ts2vec_adaptive", dict(dataset="GunPoint", iters=6, hidden_dims=8, output_dims=8, depth=2,
                                                batch_size=8)),
    "dynacl": ("dynacl", dict(dataset="GunPoint", widths="8,4", batch_size=4, epochs=1, probe_rows=20,
                              cluster_per_class=10, kmeans_restarts=1)),            # order auto = class-runs here
    "dynacl-stored": ("dynacl", dict(dataset="GunPoint", widths="8,4", batch_size=4, epochs=1, probe_rows=20,
                                     cluster_per_class=10, kmeans_restarts=1, order="stored")),
    "leaves": ("leaves", dict(dataset="GunPoint", base_width=4, batch_size=16, epochs=1, finetune_epochs=2,
                              label_fraction=0.5)),
    "aimts": ("aimts", dict(dataset="GunPoint", pretrain="BasicMotions", repr_dims=8, hidden_dims=4, depth=1,
                            proj_dims=4, image_width=2, batch_size=4, warmup_epochs=1, epochs=1, max_iters=3,
                            ft_epochs=2, ft_batch_size=8, few_shot=0.5)),
}
CASES = {k: v for k, v in CASES.items() if v[0] in METHODS}
FRACTION = {"leaves": "label_fraction", "aimts": "few_shot"}              # the flag naming the labelled share
# Files that fine-tune a fixed number of epochs and report the last (aimts, as its paper: nothing chosen)
FIXED_EPOCHS = {"aimts": "ft_epochs"}
# The ONE declared exception to label-free pre-training (CONTRACT A): DynaCL's class-run stream is
# ordered by the training labels. Every other case must pre-train without reading a label.
LABEL_USERS = {"dynacl"}


def _other_test_split(ds):
    """Same train and validation; a different test split: Gaussian noise, permuted labels, and a tenth
    of the rows dropped (every class kept), so a test-dependent draw or size shows too."""
    rng = np.random.default_rng(12345)
    n = len(ds.X_test)
    drop = set()
    for c in np.unique(ds.y_test):
        idx = np.flatnonzero(ds.y_test == c)
        drop |= set(rng.permutation(idx)[:min(len(idx) - 1, max(1, len(idx) // 10))].tolist())
    keep = np.array([i for i in range(n) if i not in drop])
    X = ds.X_test[keep]
    noise = rng.standard_normal(X.shape).astype(np.float32) * np.nanstd(ds.X_train) + np.nanmean(ds.X_train)
    noise[np.isnan(X)] = np.nan                                          # padding stays where it was
    out = dataclasses.replace(ds, X_test=noise, y_test=rng.permutation(ds.y_test[keep]), len_test=ds.len_test[keep])
    if "test" in ds.targets:
        out.targets = dict(ds.targets, test=rng.permutation(ds.targets["test"][keep]))
    if "test" in ds.subjects:
        out.subjects = dict(ds.subjects, test=np.asarray(ds.subjects["test"])[keep])
    return out


def _permuted_labels(ds):
    """Same series everywhere; the training and validation labels permuted among their rows."""
    rng = np.random.default_rng(54321)
    return dataclasses.replace(ds, y_train=rng.permutation(ds.y_train), y_val=rng.permutation(ds.y_val))


def _other_test_recordings(recs):
    """data.load_recordings (DynaCL's continuous recordings): test subjects' signals become noise and
    their labels are rolled; train and validation untouched."""
    rng = np.random.default_rng(12345)
    test = [dataclasses.replace(r, signals=rng.standard_normal(r.signals.shape).astype(np.float32),
                                labels=np.roll(r.labels, len(r.labels) // 3)) for r in recs.test]
    return dataclasses.replace(recs, test=test)


def _permuted_recording_labels(recs):
    rng = np.random.default_rng(54321)
    flip = lambda rs: [dataclasses.replace(r, labels=rng.permutation(r.labels)) for r in rs]   # noqa: E731
    return dataclasses.replace(recs, train=flip(recs.train), val=flip(recs.val))


def _permuted_file_labels(real_assemble):
    """data._assemble with each file's training (and given validation) labels permuted as they come
    out of the file, BEFORE data.py's label-stratified validation carve: the carve then holds out
    other rows, so train + val are the same series in another order. A pre-training that reads
    every training series without a label must not change. Catches: a pool in
    concatenate([train, val]) order (its row order follows the labels through the carve)."""
    sig, rng = inspect.signature(real_assemble), np.random.default_rng(2468)

    def assemble(*a, **k):
        bound = sig.bind(*a, **k)
        for key in ("ytr", "yva"):
            if bound.arguments.get(key) is not None:
                bound.arguments[key] = rng.permutation(np.asarray(bound.arguments[key]))
        return real_assemble(*bound.args, **bound.kwargs)
    return assemble


VARIANTS = {"base": (None, None), "other_test": (_other_test_split, _other_test_recordings),
            "permuted_labels": (_permuted_labels, _permuted_recording_labels),
            "permuted_file_labels": (None, None)}                # data._assemble patched in run_main


def _state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same_state(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


class Spy:
    """Watches a run of main from inside, without changing it: which encoders are built, each one's
    weights at its first optimiser step, what `embed` is handed, what every fine-tuning classifier
    is trained on (rows and targets) and with which optimiser, and what data.load_dataset returned."""

    def __init__(self, m, mp):
        self.encoders, self.first_step, self.embedded, self.datasets = [], {}, [], []
        self.optimisers, self.classifiers, self.trained_on, self.targets = [], [], [], []
        self._outputs, self.built, self.embedded_rows = {}, {}, []
        real_init = m.Encoder.__init__

        def encoder_init(enc, *a, **k):
            real_init(enc, *a, **k)
            self.encoders.append(enc)
            self.built[id(enc)] = _state(enc)
        mp.setattr(m.Encoder, "__init__", encoder_init)
        real_embed = m.embed

        def embed(net, x, *a, **k):
            self.embedded.append((net, _state(net)))
            self.embedded_rows.append(hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest())
            return real_embed(net, x, *a, **k)
        mp.setattr(m, "embed", embed)
        if hasattr(m, "Classifier"):
            real_cinit, real_forward = m.Classifier.__init__, m.Classifier.forward

            def classifier_init(clf, *a, **k):
                real_cinit(clf, *a, **k)
                self.classifiers.append({"model": clf, "start": None})

            def forward(clf, x):
                out = real_forward(clf, x)
                if clf.training:
                    rec = next((c for c in self.classifiers if c["model"] is clf), None)
                    if rec is None:                           # a copy, not built through __init__
                        rec = {"model": clf, "start": None}
                        self.classifiers.append(rec)
                    if rec["start"] is None:                  # before its first optimiser step
                        rec["start"] = {k: v.detach().clone() for k, v in clf.named_parameters()}
                    self.trained_on.append((clf, x.detach().cpu().numpy().copy()))
                    self._outputs[id(out)] = (out, len(self.trained_on) - 1)
                return out
            mp.setattr(m.Classifier, "__init__", classifier_init)
            mp.setattr(m.Classifier, "forward", forward)
            real_ce = m.F.cross_entropy

            def cross_entropy(logits, target, *a, **k):
                hit = self._outputs.get(id(logits))
                if hit is not None and hit[0] is logits:
                    self.targets.append((hit[1], target.detach().cpu().numpy().copy()))
                return real_ce(logits, target, *a, **k)
            mp.setattr(m, "F", types.SimpleNamespace(**dict(vars(m.F), cross_entropy=cross_entropy)))
        real_load = data.load_dataset

        def load_dataset(*a, **k):                             # installed below any variant's patch
            ds = real_load(*a, **k)
            self.datasets.append(ds)
            return ds
        mp.setattr(data, "load_dataset", load_dataset)

    def pre_step(self, opt, args, kwargs):
        ids = {id(p) for g in opt.param_groups for p in g["params"]}
        if not any(o is opt for o, _ in self.optimisers):
            self.optimisers.append((opt, ids))
        for enc in self.encoders:
            if id(enc) not in self.first_step and any(id(p) in ids for p in enc.parameters()):
                # its initial state: the parameters as the first optimiser step finds them, the buffers
                # (BatchNorm statistics, which a training forward already moved) as they were built
                params = {k for k, _ in enc.named_parameters()}
                self.first_step[id(enc)] = (enc, {k: (v.detach().clone() if k in params else self.built[id(enc)][k])
                                                  for k, v in enc.state_dict().items()})


@dataclasses.dataclass
class Run:
    name: str
    args: object
    res: dict
    ckpt: dict | None
    spy: Spy
    stdout: str


def run_main(name, kwargs, out_dir, variant="base", **extra) -> Run:
    """One real run of `name`.main(Args(**kwargs)) on tests/data, plots switched off (they only draw
    what results.json holds), with the Spy installed and the variant's change to the data."""
    import torch.optim.optimizer as optimizer
    m = importlib.import_module(name)
    patch_ds, patch_recs = VARIANTS[variant]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TS_DATA_DIR", str(Path(out_dir) / "cache"))
        mp.delenv("TS_DATA_MIRROR", raising=False)
        for attr in dir(m):
            if attr.startswith("plot_"):
                mp.setattr(m, attr, lambda *a, **k: None)
        spy = Spy(m, mp)
        if patch_ds is not None:
            spied = data.load_dataset
            mp.setattr(data, "load_dataset", lambda *a, **k: patch_ds(spied(*a, **k)))
        if variant == "permuted_file_labels":
            mp.setattr(data, "_assemble", _permuted_file_labels(data._assemble))
        if patch_recs is not None and hasattr(data, "load_recordings"):
            real_recs = data.load_recordings
            mp.setattr(data, "load_recordings", lambda *a, **k: patch_recs(real_recs(*a, **k)))
        args = m.Args(**{**dict(data_dir=str(REAL), seed=1, log=False, save_model=True,
                                out_dir=str(Path(out_dir) / variant)), **kwargs, **extra})
        handle = optimizer.register_optimizer_step_pre_hook(spy.pre_step)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                res = m.main(args)
        finally:
            handle.remove()
    path = Path(res.get("run_dir", "")) / "encoder.pt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True) if res.get("run_dir") and path.exists() else None
    return Run(name, args, res, ckpt, spy, out.getvalue())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs(case, variant) -> Run, each run once per module (several tests read the same run)."""
    cache = {}

    def get(case, variant="base", **extra):
        key = (case, variant, tuple(sorted(extra.items())))
        if key not in cache:
            name, kwargs = CASES[case]
            cache[key] = run_main(name, kwargs, tmp_path_factory.mktemp(f"{case}-{variant}"), variant, **extra)
        return cache[key]
    return get


def _strip(obj):
    """results without the keys CONTRACT A lets vary (timing, memory, paths, versions)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not TIMING.search(str(k))}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _canon(obj) -> str:
    """A comparable text of results (NaN == NaN, as it is in results.json; numpy scalars as numbers)."""
    return json.dumps(_strip(obj), sort_keys=True, default=lambda o: o.tolist() if hasattr(o, "tolist") else repr(o))


def _contract_keys(res: dict, problems: list) -> None:
    for key, kind in (("history", list), ("selection", dict), ("eval", dict), ("label_free", bool),
                      ("label_note", str)):
        if not isinstance(res.get(key), kind):
            problems.append(f"results[{key!r}] is missing or not a {kind.__name__} (CONTRACT A)")


def _finish(case, problems):
    assert not problems, f"{case}: {len(problems)} contract problem(s):\n  - " + "\n  - ".join(problems)


# --------------------------------------------------------------------------- A/B: the test split
@pytest.mark.parametrize("case", [c for c in CASES if c != "dynacl-stored"])
def test_the_test_split_reaches_the_final_evaluation_only(case, runs):
    """Same train and validation, a different test split (noise, permuted labels, fewer rows): history,
    every selected value (probe C, fine-tuning epoch), the saved weights and everything else outside
    "eval" are identical; "eval" differs. Catches: pre-training on test, a probe C or fine-tuning epoch
    chosen on test, test-dependent random draws or sizes upstream of the evaluation."""
    base, other = runs(case), runs(case, "other_test")
    problems = []
    _contract_keys(base.res, problems)
    a, b = _strip(base.res), _strip(other.res)
    for r in (a, b):
        if isinstance(r.get("args"), dict):
            r["args"] = {k: v for k, v in r["args"].items() if k != "out_dir"}   # a path: each run has its own
    for key in sorted(set(a) | set(b)):
        if key != "eval" and _canon(a.get(key)) != _canon(b.get(key)):
            problems.append(f"results[{key!r}] changed when only the test split changed")
    if _canon(a.get("eval")) == _canon(b.get("eval")):
        problems.append("results['eval'] did not change with the test split: is it computed from test?")
    for key in (base.res.get("eval") or {}):
        if SELECTED_IN_EVAL.search(key):
            problems.append(f"eval[{key!r}] looks chosen on validation: it belongs in 'selection'")
    # the probes see the same train and validation rows: per evaluated encoder, only its test embedding changes
    changed = [i for i, (x, y) in enumerate(zip(base.spy.embedded_rows, other.spy.embedded_rows)) if x != y]
    n_encoders = len({id(net) for net, _ in base.spy.embedded})
    if len(base.spy.embedded_rows) != len(other.spy.embedded_rows) or len(changed) > n_encoders:
        problems.append(f"{len(changed)} of {len(base.spy.embedded_rows)} embed calls saw other rows for "
                        f"{n_encoders} encoders: rows other than the test split's depend on the test split")
    if base.ckpt is None:
        problems.append("no run_dir/encoder.pt written with save_model=True")
    else:
        for part in ("state_dict", "init_state_dict"):
            if part not in base.ckpt:
                problems.append(f"encoder.pt has no {part!r} (CONTRACT D)")
            elif other.ckpt is None or not _same_state(base.ckpt[part], other.ckpt.get(part, {})):
                problems.append(f"encoder.pt[{part!r}] changed when only the test split changed")
    _finish(case, problems)


@pytest.mark.parametrize("name", METHODS)
def test_pretrain_and_finetune_take_no_test_arrays(name):
    """Structural half of CONTRACT B: the test split is handed to one evaluation step, never to
    `pretrain` or `finetune`. Catches: aimts' finetune(..., x_te, y_te, ...)."""
    m = importlib.import_module(name)
    bad = [f"{fn}({p})" for fn in ("pretrain", "finetune") if hasattr(m, fn)
           for p in inspect.signature(getattr(m, fn)).parameters if TEST_ARG.search(p)]
    assert not bad, f"{name}: {bad} receive the test split"


# --------------------------------------------------------------------------- label-free pre-training
@pytest.mark.parametrize("case", list(CASES))
def test_pretraining_reads_no_label_except_the_one_declared_exception(case, runs):
    """Permuting the training (and validation) labels leaves pre-training (history, encoder weights,
    its initial weights) identical, and the run says label_free=True with an empty note. The one
    declared exception is DynaCL's class-run order (stream built from the labels): it must say
    label_free=False, say why (label_note, also printed), and really change under the permutation;
    DynaCL with --order stored is label-free like every other file.
    The labels are permuted twice: after loading (the same train / val rows, other labels), and as
    they come out of the file, before data.py's stratified validation carve (the same training
    series, split into train and val differently: a label-free pool must not follow that carve).
    Catches: a sampler or order built from labels without saying so, a false "labels unused", a
    pre-training pool whose row order (so its batches) follows the labels through the carve."""
    name, kwargs = CASES[case]
    base, perm = runs(case), runs(case, "permuted_labels")
    problems = []
    _contract_keys(base.res, problems)
    uses_labels = name in LABEL_USERS and kwargs.get("order", "auto") != "stored"

    def same_pretraining(other):
        return (_canon(base.res.get("history")) == _canon(other.res.get("history"))
                and base.ckpt is not None and other.ckpt is not None
                and all(_same_state(base.ckpt.get(p, {}), other.ckpt.get(p, {})) for p in ("state_dict", "init_state_dict")))
    same = same_pretraining(perm)
    free, note = base.res.get("label_free"), base.res.get("label_note")
    if uses_labels:
        if free is not False:
            problems.append(f"label_free is {free!r}: the class-run order is built from the training labels")
        if not note:
            problems.append("label_note is empty: say why pre-training reads labels")
        elif note not in base.stdout:
            problems.append("label_note is not printed")
        if same:
            problems.append("permuting the labels did not change the class-run pre-training (is the order label-built?)")
    else:
        if free is not True or note != "":
            problems.append(f"label_free={free!r}, label_note={note!r}: expected True and ''")
        if not same:
            problems.append("pre-training (history or encoder.pt weights) changed when only the labels were permuted")
        if not same_pretraining(runs(case, "permuted_file_labels")):
            problems.append("pre-training (history or encoder.pt weights) changed when the file's training labels "
                            "were permuted before the validation carve: the pool's order follows the labels")
    _finish(case, problems)


# --------------------------------------------------------------------------- D: the random-init baseline
def _check_baseline(run: Run, trained_enc, init_state: dict, problems: list) -> None:
    """The embedded random-init encoder has exactly init_state, is a separate object of the same
    class and size as the trained encoder, sharing no storage with it."""
    baseline = [(net, st) for net, st in run.spy.embedded if _same_state(st, init_state)]
    if not baseline:
        problems.append("no encoder with the trained encoder's initial weights is evaluated (random-init baseline)")
        sizes = sorted({sum(v.numel() for v in st.values()) for _, st in run.spy.embedded})
        problems.append(f"  (encoders evaluated hold {sizes} numbers; the trained one's init "
                        f"{sum(v.numel() for v in init_state.values())})")
        return
    net = baseline[0][0]
    if trained_enc is not None:
        if net is trained_enc:
            problems.append("the random-init baseline is the trained encoder object itself")
        if type(net) is not type(trained_enc):
            problems.append(f"random-init baseline is a {type(net).__name__}, the trained encoder a {type(trained_enc).__name__}")
        ptrs = {p.data_ptr() for p in trained_enc.parameters()}
        if any(p.data_ptr() in ptrs for p in net.parameters()):
            problems.append("the random-init baseline shares parameter storage with the trained encoder")


@pytest.mark.parametrize("case", [c for c in CASES if c != "dynacl-stored"])
def test_random_init_baseline_is_the_trained_encoders_own_initial_weights(case, runs):
    """CONTRACT D: the random-init encoder main evaluates is the pre-trained encoder's weights at its
    first optimiser step, in its own copy of the same class and size; encoder.pt holds the evaluated
    pre-trained encoder and that init. Catches: a baseline that is the trained encoder, a fresh draw
    (another seed, another moment), a differently sized network, an encoder.pt of other weights."""
    run = runs(case)
    problems = []
    first = list(run.spy.first_step.values())
    if not first:
        _finish(case, ["no encoder took an optimiser step (pre-training did not run?)"])
    trained_enc, init_state = first[0]                         # the first encoder an optimiser stepped
    _check_baseline(run, trained_enc, init_state, problems)
    if run.ckpt is None:
        problems.append("no encoder.pt written with save_model=True")
    else:
        if "init_state_dict" not in run.ckpt:
            problems.append("encoder.pt has no 'init_state_dict'")
        elif not _same_state(run.ckpt["init_state_dict"], init_state):
            problems.append("encoder.pt['init_state_dict'] is not the trained encoder's initial weights")
        sd = run.ckpt.get("state_dict", {})
        if not any(_same_state(st, sd) for _, st in run.spy.embedded):
            problems.append("encoder.pt['state_dict'] is not the encoder that was evaluated")
        if _same_state(sd, init_state):
            problems.append("encoder.pt['state_dict'] equals the initial weights: nothing was trained")
    _finish(case, problems)


@pytest.mark.skipif("aimts" not in METHODS, reason="no aimts.py")
def test_aimts_load_rebuilds_the_baseline_from_the_checkpoint(runs):
    """aimts --load: the random-init baseline is the checkpoint's own init_state_dict in the
    checkpoint's architecture, whatever the current size flags say. Catches: a baseline built from
    the current flags (7,512 parameters against a loaded 456)."""
    base = runs("aimts")
    assert base.ckpt is not None, "aimts wrote no encoder.pt"
    path = Path(base.res["run_dir"]) / "encoder.pt"
    run = runs("aimts", load=str(path), repr_dims=12, hidden_dims=6, depth=2)   # other sizes than the checkpoint's
    problems = []
    sd = base.ckpt["state_dict"]
    if not any(_same_state(st, sd) for _, st in run.spy.embedded):
        problems.append("the loaded encoder is not the one evaluated")
    size = sum(v.numel() for v in sd.values())
    others = sorted({sum(v.numel() for v in st.values()) for _, st in run.spy.embedded if not _same_state(st, sd)})
    if others != [size]:
        problems.append(f"the random-init baseline holds {others} numbers, the loaded encoder {size}")
    if "init_state_dict" not in base.ckpt:
        problems.append("encoder.pt has no 'init_state_dict' to rebuild the baseline from")
    else:
        loaded = next((net for net, st in run.spy.embedded if _same_state(st, sd)), None)
        _check_baseline(run, loaded, base.ckpt["init_state_dict"], problems)
    _finish("aimts --load", problems)


# --------------------------------------------------------------------------- E: fine-tuning
def _identify(rows: np.ndarray, ref: np.ndarray) -> tuple:
    """Which reference series each row is, up to a per-series / per-channel positive affine map
    (min-max scaling, z-scoring): the reference of per-channel correlation 1, and that correlation.
    rows (B, C, T) or (B, T, C); ref (N, C, T)."""
    C, T = ref.shape[1:]
    if rows.shape[1:] != (C, T):
        rows = rows.transpose(0, 2, 1)
    def unit(a):
        a = np.nan_to_num(a.astype(np.float64))
        a = a - a.mean(-1, keepdims=True)
        return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    corr = np.einsum("bct,nct->bn", unit(rows), unit(ref)) / C          # (B, N) mean per-channel correlation
    return corr.argmax(1), corr.max(1)


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][0] in FINETUNING])
def test_finetuning_trains_the_whole_network_on_the_asked_labelled_subset_of_train(case, runs):
    """CONTRACT E, inside the real main: every classifier fine-tuned (pre-trained and from scratch)
    has all its parameters in the optimiser and every parameter moves; it trains only on training
    rows (never a test row, never a row it is validated on), exactly round(fraction * n_c) of each
    class as the flag asks, with each row's own label; the epoch kept is chosen on validation and
    reported in selection. Catches: head-only fine-tuning, a frozen encoder, a label fraction ignored,
    fine-tuning on test or on validation rows, labels of reordered rows left behind."""
    name, kwargs = CASES[case]
    run = runs(case)
    spy, problems = run.spy, []
    target = next((ds for ds in spy.datasets if ds.name == kwargs["dataset"]), None)
    assert target is not None, "the target dataset was not loaded through data.load_dataset"
    splits = [("train", target.X_train, target.y_train), ("val", target.X_val, target.y_val),
              ("test", target.X_test, target.y_test)]
    ref = np.concatenate([X for _, X, _ in splits])
    where = [(s, i) for s, X, _ in splits for i in range(len(X))]
    label = {(s, i): int(y[i]) for s, _, y in splits for i in range(len(y))}
    if not spy.classifiers:
        _finish(case, ["no Classifier was fine-tuned"])
    targets = dict(spy.targets)
    for k, rec in enumerate(spy.classifiers):
        clf, who = rec["model"], f"classifier {k + 1} of {len(spy.classifiers)}"
        params = dict(clf.named_parameters())
        opt_ids = [ids for _, ids in spy.optimisers if any(id(p) in ids for p in params.values())]
        missing = [n for n, p in params.items() if not opt_ids or id(p) not in opt_ids[0] or not p.requires_grad]
        if missing:
            problems.append(f"{who}: {len(missing)} parameters not trained by its optimiser, e.g. {missing[:3]}")
        if rec["start"] is not None:
            still = [n for n, p in params.items() if torch.equal(p.detach(), rec["start"][n])]
            if still:
                problems.append(f"{who}: {len(still)} parameters never changed, e.g. {still[:3]}")
        seen, wrong_label = set(), 0
        for j, (c, x) in enumerate(spy.trained_on):
            if c is not clf:
                continue
            idx, corr = _identify(x, ref)
            if (corr < 1 - 1e-4).any():
                problems.append(f"{who}: a training batch holds series that are none of the dataset's rows")
                continue
            rows = [where[i] for i in idx]
            seen |= set(rows)
            y = targets.get(j)
            if y is not None:
                wrong_label += int(sum(int(t) != label[r] for t, r in zip(y, rows)))
        split_seen = {s for s, _ in seen}
        if "test" in split_seen:
            problems.append(f"{who}: fine-tuned on test rows")
        if wrong_label:
            problems.append(f"{who}: {wrong_label} training rows were given another row's label")
        pool = "train" if split_seen <= {"train"} else "train+val"
        if pool == "train+val":
            problems.append(f"{who}: fine-tuned on validation rows, which then cannot choose its epoch")
        y_pool = target.y_train if pool == "train" else np.concatenate([target.y_train, target.y_val])
        frac = getattr(run.args, FRACTION[name]) or 1.0
        want = {int(c): max(1, int(round(frac * int((y_pool == c).sum())))) for c in np.unique(y_pool)}
        got = {c: sum(label[r] == c for r in seen) for c in want}
        if got != want:
            problems.append(f"{who}: trained on {got} rows per class; --{FRACTION[name].replace('_', '-')} "
                            f"{frac:g} asks for {want}")
    sel = run.res.get("selection") or {}
    if not isinstance(sel.get("finetune_epoch"), int):
        problems.append("selection['finetune_epoch'] missing: the epoch kept, chosen on validation")
    log = sel.get("finetune_val_log")
    if name in FIXED_EPOCHS:                                  # the paper's fixed schedule: nothing to choose
        if sel.get("finetune_epoch") != getattr(run.args, FIXED_EPOCHS[name]) or log != []:
            problems.append(f"{name} fine-tunes a fixed --{FIXED_EPOCHS[name].replace('_', '-')} epochs and reports "
                            f"the last: selection should say so (finetune_epoch {sel.get('finetune_epoch')}, log {log!r})")
    elif not (isinstance(log, list) and log and all("epoch" in e and any(k.startswith("val_") for k in e) for e in log)):
        problems.append("selection['finetune_val_log'] missing: per-epoch validation scores {epoch, val_...}")
    if len(spy.classifiers) > 1 and not isinstance(sel.get("scratch_finetune_epoch"), int):
        problems.append("selection['scratch_finetune_epoch'] missing for the from-scratch fine-tune")
    _finish(case, problems)


# --------------------------------------------------------------------------- F: defaults
def _deviation_numbers(doc: str) -> set:
    """The numbered items of the header's 'Where we differ ...' list."""
    lines = doc.splitlines()
    start = next((i for i, ln in enumerate(lines) if re.search(r"differ", ln, re.I)), None)
    if start is None:
        return set()
    out = set()
    for ln in lines[start + 1:]:
        if ln.startswith("Run:"):
            break
        hit = re.match(r"^\s{1,6}(\d+)\.\s", ln)
        if hit:
            out.add(int(hit.group(1)))
    return out


@pytest.mark.parametrize("name", METHODS)
def test_every_default_has_a_source_in_the_paper_or_a_numbered_deviation(name):
    """CONTRACT F: tests/test_<method>.py defines PAPER_DEFAULTS = {field: (value, source)} with a row
    for every Args field; each source is a paper place, "deviation N" (a numbered item of the file's
    header), or "plumbing"; the values are Args()'s. Catches: a new flag with no stated source, a
    deviation cited that the header does not list, a table that drifted from the code."""
    m = importlib.import_module(name)
    table = getattr(importlib.import_module(f"test_{name}"), "PAPER_DEFAULTS", None)
    assert isinstance(table, dict), f"tests/test_{name}.py defines no PAPER_DEFAULTS table"
    fields = {f.name: f.default for f in dataclasses.fields(m.Args)}
    problems = []
    if set(table) != set(fields):
        problems.append(f"fields without a row: {sorted(set(fields) - set(table))}; rows without a field: "
                        f"{sorted(set(table) - set(fields))}")
    listed = _deviation_numbers(m.__doc__ or "")
    for field, row in table.items():
        if not (isinstance(row, tuple) and len(row) == 2 and isinstance(row[1], str) and row[1].strip()):
            problems.append(f"{field}: row {row!r} is not (value, source)")
            continue
        value, source = row
        if field in fields and value != fields[field]:
            problems.append(f"{field}: table says {value!r}, Args() says {fields[field]!r}")
        for n in re.findall(r"deviation (\d+)", source):
            if int(n) not in listed:
                problems.append(f"{field}: cites deviation {n}, the header lists {sorted(listed)}")
        if not re.search(r"plumbing|deviation \d|Sec\.|Table|App\.|Eq\.|Fig\.|Alg\.|code", source):
            problems.append(f"{field}: source {source!r} names no paper place, deviation or 'plumbing'")
    _finish(name, problems)


# =========================================================================== the shared linear probe
def _probe():
    return importlib.import_module(METHODS[0]).linear_eval           # identical in every file (test above)


def _reference_probe(ztr, ytr, zva, yva, zte, c_grid=(0.01, 0.1, 1.0, 10.0, 100.0)):
    """An independent two-class reference of the protocol, in numpy: Newton's method on
    mean BCE + ||w||^2 / (4 C N) (the two-class softmax objective of mean CE + ||W||^2 / (2 C N)
    with W = [-w/2, w/2]), standardised with the fit rows' mean and population std; C by validation
    accuracy, ties by validation cross-entropy; refit on train + val. -> (C, val acc, test pred)."""
    def fit(z, y, C):
        mu, sd = z.mean(0), z.std(0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        A = np.hstack([(z - mu) / sd, np.ones((len(z), 1))])
        w, N = np.zeros(A.shape[1]), len(z)
        reg = np.r_[np.full(A.shape[1] - 1, 1 / (2 * C * N)), 0.0]       # bias unpenalised
        for _ in range(100):
            p = 1 / (1 + np.exp(-A @ w))
            g = A.T @ (p - y) / N + reg * w
            H = (A * (p * (1 - p))[:, None]).T @ A / N + np.diag(reg)
            step = np.linalg.solve(H + 1e-12 * np.eye(len(w)), g)
            w -= step
            if np.abs(step).max() < 1e-12:
                break
        return lambda q: np.hstack([(q - mu) / sd, np.ones((len(q), 1))]) @ w   # logit of class 1

    best = None
    for C in c_grid:
        s = fit(ztr, ytr, C)(zva)
        acc = float(((s > 0) == yva).mean())
        ce = float(np.mean(np.logaddexp(0, -s) * yva + np.logaddexp(0, s) * (1 - yva)))
        if best is None or (acc, -ce) > best[0]:
            best = ((acc, -ce), C)
    C = best[1]
    s = fit(np.vstack([ztr, zva]), np.r_[ytr, yva], C)(zte)
    return C, best[0][0], (s > 0).astype(int), fit(ztr, ytr, C)(zte) > 0


def _blobs(rng, n, shift=0.0, flip=0.0, sep=3.0):
    y = np.arange(n) % 2
    z = rng.standard_normal((n, 3)) + np.outer(2 * y - 1, [sep / 2, 0, 0]) + shift
    if flip:
        k = int(flip * n)
        y = y.copy()
        y[:k] = 1 - y[:k]
    return z, y


def test_linear_eval_chooses_C_on_validation_where_validation_prefers_a_known_C():
    """The same training rows, two validation splits: clean, well-separated validation rows are right
    at every C, so the lowest cross-entropy (the most confident, C = 100) wins; validation rows whose
    labels are half flipped give the same accuracy at every C, so the least confident (C = 0.01) wins.
    Test data and test labels never move C. Catches: C chosen on test, on train, the grid's first or
    last value always, the tie-break reversed."""
    probe, rng = _probe(), np.random.default_rng(0)
    ztr, ytr = _blobs(rng, 40, sep=6)
    zva, yva = _blobs(rng, 20, sep=8)
    zte, yte = _blobs(rng, 30)
    clean = probe(ztr, ytr, zva, yva, zte, yte)
    noisy = probe(ztr, ytr, zva, np.where(np.arange(20) < 10, 1 - yva, yva), zte, yte)
    assert (clean["C"], clean["val_accuracy"]) == (100.0, 1.0)
    assert (noisy["C"], noisy["val_accuracy"]) == (0.01, 0.5)
    other = probe(ztr, ytr, zva, yva, rng.standard_normal((25, 3)) * 5, rng.integers(0, 2, 25))
    assert (other["C"], other["val_accuracy"]) == (clean["C"], clean["val_accuracy"])   # test never chooses


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_linear_eval_equals_an_independent_reference_fit(seed):
    """C, its validation accuracy and every test prediction equal the numpy reference (fit-row
    standardisation, validation choice, refit on train + val); the data are drawn so that refitting
    on train alone would predict differently, so that refit is checked too. Catches: no refit, refit
    on train only, standardising with all rows' or the test rows' statistics, the penalty scaled wrong."""
    probe, rng = _probe(), np.random.default_rng(seed)
    ztr, ytr = _blobs(rng, 30, sep=1.5)
    zva, yva = _blobs(rng, 30, shift=np.array([0.8, 0.5, -0.3]), sep=1.5)   # moves the boundary when added
    zte, yte = _blobs(rng, 60, sep=1.5)
    zte = zte * 1.7 + np.array([0.4, -2.0, 1.0])                       # test statistics far from the fit rows'
    C, acc, pred, pred_train_only = _reference_probe(ztr, ytr, zva, yva, zte)
    got = probe(ztr, ytr, zva, yva, zte, yte)
    assert got["C"] == C and got["val_accuracy"] == pytest.approx(acc)
    np.testing.assert_array_equal(got["pred"], pred)
    assert (pred != pred_train_only).any()                            # the refit is visible in this data
    assert got["accuracy"] == pytest.approx(float((pred == yte).mean()))


def test_linear_eval_standardises_with_the_fit_rows_only():
    """Test rows shifted far along the separating direction are all predicted as that side's class
    (the fit rows' statistics are applied to them); their own statistics would re-centre them and
    predict both classes. Shifting and scaling the test rows leaves C and its validation accuracy as
    they were. Catches: z-scoring the test split with its own statistics, or with train + test."""
    probe, rng = _probe(), np.random.default_rng(7)
    ztr, ytr = _blobs(rng, 40)
    zva, yva = _blobs(rng, 20)
    zte, _ = _blobs(rng, 40)
    far = zte + np.array([6.0, 0, 0])                                  # every test row on class 1's side
    r = probe(ztr, ytr, zva, yva, far, np.ones(40, dtype=int))
    assert r["accuracy"] == 1.0 and (r["pred"] == 1).all()
    base = probe(ztr, ytr, zva, yva, zte, np.zeros(40, dtype=int))
    assert (r["C"], r["val_accuracy"]) == (base["C"], base["val_accuracy"])
    # the training rows' scale is the fit rows' alone: scaling only the test rows by 100 keeps their side
    scaled = probe(ztr, ytr, zva, yva, far * 100, np.ones(40, dtype=int))
    assert (scaled["pred"] == 1).all()


# --------------------------------------------------------------------------- pretrain(callback=...)
def _tiny_pretrain(name, callback):
    """Each file's own pretrain on a tiny seeded input, with the callback. -> (returned encoder, init or None)."""
    m = importlib.import_module(name)
    cpu, rng = torch.device("cpu"), np.random.default_rng(0)
    quiet = dict(log=False)
    if name == "ts2vec_adaptive":
        x = rng.standard_normal((16, 32, 1)).astype(np.float32)
        args = m.Args(dataset="synthetic", hidden_dims=8, output_dims=8, depth=2, batch_size=8, iters=5, **quiet)
        enc, init, _, _ = m.pretrain(x, args, cpu, callback=callback)
    elif name == "dynacl":
        x = rng.standard_normal((12, 10, 6)).astype(np.float32)
        args = m.Args(dataset="synthetic", widths="8,4", batch_size=4, epochs=2, **quiet)
        enc, init, _, _ = m.pretrain(x, args, cpu, "x", callback=callback)
    elif name == "leaves":
        x = rng.random((32, 1, 32)).astype(np.float32)
        args = m.resolve(m.Args(base_width=4, batch_size=16, epochs=2, **quiet), "x")
        enc, init = m.pretrain(x, args, cpu, log=lambda s: None, callback=callback)[0], None
    else:
        src = [m.Source("a", rng.standard_normal((12, 1, 24))), m.Source("b", rng.standard_normal((10, 2, 24)))]
        args = m.Args(repr_dims=8, hidden_dims=4, depth=1, proj_dims=4, image_width=2, batch_size=4,
                      warmup_epochs=1, epochs=1, max_iters=3, **quiet)
        enc, init = m.pretrain(src, args, cpu, callback=callback)[0], None
    return enc, init


@pytest.mark.parametrize("name", METHODS)
def test_pretrain_callback_sees_step_zero_every_step_and_the_returned_encoder(name):
    """The learning-curve hook: step 0 is the untrained encoder, then one call per optimiser step,
    and the last call sees exactly the encoder pretrain returns (the SWA average where there is one)."""
    seen = []
    enc, init = _tiny_pretrain(name, lambda step, e: seen.append(
        (step, {k: v.detach().clone() for k, v in e.state_dict().items()})))
    steps = [s for s, _ in seen]
    assert steps == list(range(len(steps))) and len(steps) >= 4
    last = seen[-1][1]
    assert all(torch.equal(last[k], v) for k, v in enc.state_dict().items())
    first = seen[0][1]
    assert any(not torch.equal(first[k], v) for k, v in last.items() if v.is_floating_point())
    if init is not None:
        assert all(torch.equal(first[k], v) for k, v in init.state_dict().items())
