"""
Small utilities shared by the method files. Knows no method.

  arg / parse_args ..... a dataclass becomes a command line (--flag-name per field)
  UserError / cli ...... a user's mistake prints one `error: ...` line and exits 2; bugs keep
                         their traceback
  set_seed ............. python, numpy, torch (and CUDA) from one integer
  setup_torch .......... CPU settings that matter for speed (flush denormals, oneDNN off)
  get_device ........... CUDA, then Apple MPS, then CPU; "--device" overrides
  make_run_dir ......... runs/{dataset}__{method}__{seed}__{unix_time}/
  save_json ............ atomic JSON write
  save_checkpoint ...... atomic state-dict checkpoint (+ args), loaded with weights_only=True
  progress_line ........ one plain line per epoch: loss terms, samples/s, elapsed, ETA
  plot_history ......... loss curve (matplotlib, Agg backend)
  write_results ........ results.json with args, history, eval, time, peak memory, versions
  summarize ............ `python common.py summarize runs/` prints a README-style table
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PROJECT = "timeseries-ssl"


# --------------------------------------------------------------------------- command line
def arg(default: Any, help: str) -> Any:
    """A dataclass field whose help text lives in its metadata: `epochs: int = arg(40, "...")`."""
    return dataclasses.field(default=default, metadata={"help": help})


def _str2bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "y", "on"):
        return True
    if s.lower() in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {s!r}")


def parse_args(cls, argv: list[str] | None = None):
    """One flag per field of dataclass `cls`: --hidden-dim (also --hidden_dim); bools get --x/--no-x."""
    p = argparse.ArgumentParser(description=(cls.__doc__ or "").strip(),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(cls):
        names = [f"--{f.name.replace('_', '-')}"] + ([f"--{f.name}"] if "_" in f.name else [])
        help_ = f.metadata.get("help", "")
        typ = f.type if isinstance(f.type, type) else {"str": str, "int": int, "float": float,
                                                         "bool": bool}[str(f.type)]
        if typ is bool:
            p.add_argument(*names, dest=f.name, default=f.default, help=help_,
                           action=argparse.BooleanOptionalAction)
        else:
            p.add_argument(*names, dest=f.name, type=typ, default=f.default, help=help_)
    return cls(**vars(p.parse_args(argv)))


# --------------------------------------------------------------------------- errors at the door
class UserError(ValueError):
    """A mistake in what the user asked for (unknown name, bad file, bad shape, too little data).

    The message names the problem and the fix. `cli` prints it as one `error: ...` line with no
    traceback; anything else that goes wrong is our bug and keeps its traceback.
    """


def cli(main, cls, argv: list[str] | None = None):
    """`if __name__ == "__main__": cli(main, Args)`: parse the flags, run main, and turn a UserError
    (or a path that does not exist) into `error: ...` on stderr with exit status 2."""
    args = parse_args(cls, argv)
    try:
        return main(args)
    except (UserError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


# --------------------------------------------------------------------------- torch set-up
def setup_torch(variable_shapes: bool = True, threads: int | None = None) -> None:
    """CPU settings that matter for speed; call at the start of main, before other torch work.

    Flushing denormals: contrastive logits without temperature give near-one-hot softmaxes whose
    gradients are denormal floats, which put MKL on a slow path (a whole TS2Vec run 3.4x slower
    here). Threads created after this call inherit the flag, so it must come first.
    oneDNN builds a kernel per input shape; with random crops every step has a new shape (6x).
    """
    import torch
    torch.set_flush_denormal(True)
    if variable_shapes:
        torch.backends.mkldnn.enabled = False
    if threads:
        torch.set_num_threads(threads)


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (all devices); cuDNN deterministic."""
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def get_device(name: str = "auto"):
    """'auto' picks CUDA, then Apple MPS, then CPU; anything else is passed to torch.device."""
    import torch
    if name != "auto":
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available here; use --device cpu")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise UserError(f"--device {name}: Apple MPS is not available here; use --device cpu")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# --------------------------------------------------------------------------- files
def _umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux), else set and restored."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _fsync_dir(folder) -> None:
    """Make a rename inside `folder` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, flushed to disk, then renamed into place:
    a reader sees the old file or the whole new one, also after a crash. The file gets the mode
    open() would give it (0666 minus the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())            # the bytes are on disk before the rename publishes them
        os.replace(tmp, path)
        _fsync_dir(path.parent)              # and the rename itself survives a crash
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_json(obj: Any, path) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    data = json.dumps(obj, indent=2, default=_json_default).encode()
    _atomic_write(Path(path), lambda fh: fh.write(data))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def make_run_dir(out_dir, dataset: str, method: str, seed: int) -> Path:
    """runs/{dataset}__{method}__{seed}__{unix_time}, made unique if two runs start in one second."""
    base = Path(out_dir) / f"{Path(str(dataset)).stem}__{method}__{seed}__{int(time.time())}"
    d, i = base, 1
    while d.exists():
        d, i = Path(f"{base}_{i}"), i + 1
    d.mkdir(parents=True)
    return d


def save_checkpoint(path, state_dict: dict, args: Any = None, extra: dict | None = None) -> None:
    """Atomic save of {'state_dict', 'args'} (+ the items of `extra`, e.g. {'init_state_dict': ...}):
    tensors and plain data only, no pickled classes."""
    import torch
    if dataclasses.is_dataclass(args):
        args = dataclasses.asdict(args)
    elif isinstance(args, argparse.Namespace):
        args = vars(args)
    args = json.loads(json.dumps(args, default=_json_default))       # plain data only: loadable with weights_only
    bad = [k for k, v in state_dict.items() if not torch.is_tensor(v)]
    if bad:
        raise TypeError(f"save_checkpoint takes a module state_dict (name -> tensor); {bad[:3]} are not tensors")
    payload = {"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "args": args}
    for key, value in (extra or {}).items():                  # a state dict stays tensors, the rest plain data
        if key in payload:
            raise ValueError(f"save_checkpoint: extra key {key!r} would overwrite {key!r}")
        is_sd = isinstance(value, dict) and value and all(torch.is_tensor(v) for v in value.values())
        payload[key] = ({k: v.detach().cpu() for k, v in value.items()} if is_sd
                        else json.loads(json.dumps(value, default=_json_default)))
    _atomic_write(Path(path), lambda fh: torch.save(payload, fh))


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint written by save_checkpoint (weights_only=True: no code is executed)."""
    import torch
    return torch.load(path, map_location=map_location, weights_only=True)


# --------------------------------------------------------------------------- progress, results
def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_line(epoch: int, epochs: int, loss: float, terms: dict | None, n_samples: int,
                  epoch_time: float, elapsed: float) -> str:
    """`epoch  3/40 | loss 1.234 (inst 0.5, temp 0.7) | 1,950 samples/s | 0:12 elapsed, ETA 2:31`."""
    w = len(str(epochs))
    t = ""
    if terms:
        t = " (" + ", ".join(f"{k} {v:.4g}" for k, v in terms.items()) + ")"
    rate = n_samples / max(epoch_time, 1e-9)
    eta = elapsed / max(epoch, 1) * (epochs - epoch)
    return (f"epoch {epoch:{w}d}/{epochs} | loss {loss:.4f}{t} | {rate:,.0f} samples/s | "
            f"{_fmt_time(elapsed)} elapsed, ETA {_fmt_time(eta)}")


def peak_memory_mb(device=None) -> float:
    """Peak memory of this process: CUDA allocator peak on GPU, else max resident set size."""
    import torch
    if device is not None and getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 2**10   # bytes on macOS, KiB on Linux
    except ImportError:  # Windows
        return float("nan")


def versions() -> dict:
    import torch
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "platform": platform.platform()}
    try:
        import subprocess
        here = Path(__file__).resolve().parent
        out["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, text=True,
                                    capture_output=True, timeout=5).stdout.strip() or None
    except Exception:
        out["git"] = None
    return out


def write_results(run_dir, method: str, dataset: str, seed: int, args: Any, history: list,
                  eval_metrics: dict, time_s: float, device=None, extra: dict | None = None) -> dict:
    """results.json: method, dataset, seed, args, history, eval, time_s, peak memory, versions."""
    res = {"method": method, "dataset": dataset, "seed": seed,
           "args": dataclasses.asdict(args) if dataclasses.is_dataclass(args) else args,
           "history": history, "eval": eval_metrics, "time_s": time_s,
           "device": str(device), "peak_memory_mb": peak_memory_mb(device), "versions": versions()}
    if extra:
        res.update(extra)
    save_json(res, Path(run_dir) / "results.json")
    return res


def plot_history(history: list[dict], path, title: str = "") -> None:
    """Loss curve: total loss and every loss term found in history[i]['loss_terms']."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["loss"] for h in history], label="loss", lw=2)
    keys = sorted({k for h in history for k in (h.get("loss_terms") or {})})
    for k in keys:
        ax.plot(ep, [(h.get("loss_terms") or {}).get(k, np.nan) for h in history], label=k, lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarize(runs_dir, metric: str = "accuracy") -> str:
    """Markdown table, mean ± std over seeds of eval[metric], one row per dataset, one column per method."""
    cells: dict = {}
    for f in sorted(Path(runs_dir).glob("*/results.json")):
        r = json.loads(f.read_text())
        v = (r.get("eval") or {}).get(metric)
        if v is not None:
            cells.setdefault(r["dataset"], {}).setdefault(r["method"], []).append(float(v))
    methods = sorted({m for d in cells.values() for m in d})
    lines = ["| Dataset | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for ds, row in sorted(cells.items()):
        vals = []
        for m in methods:
            x = np.array(row.get(m, []), dtype=float) * 100
            vals.append(f"{x.mean():.1f} ± {x.std():.1f} (n={len(x)})" if len(x) else "")
        lines.append(f"| {ds} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "summarize":
        print(summarize(sys.argv[2], *(sys.argv[3:4])))
    else:
        print("usage: python common.py summarize RUNS_DIR [metric]")
