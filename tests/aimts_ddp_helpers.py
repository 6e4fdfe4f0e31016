"""Helpers of tests/test_aimts.py's two-process test: what each gloo process runs, and the inputs the
single-process reference rebuilds. Imported by the test and by the child processes it starts."""
import json
import os

import numpy as np
import torch
import torch.distributed as dist

import aimts as m

SIZES = dict(repr_dims=8, hidden_dims=4, depth=1, proj_dims=4, image_width=2)


def batch(rank):
    """Process `rank`'s batch of the one-step check. -> (x (6, 20, 2), lo, hi), float64."""
    x = torch.randn(6, 20, 2, generator=torch.Generator().manual_seed(100 + rank), dtype=torch.float64)
    return x, x.amin((0, 1)), x.amax((0, 1))


def model_and_opt():
    torch.manual_seed(0)
    model = m.AimTS(m.Args(**SIZES, dropout=0.0)).double()
    return model, torch.optim.SGD(model.parameters(), lr=0.5)


def main_args(rank, tmp, **kw):
    return m.Args(**{**SIZES, **dict(dataset="synthetic", batch_size=4, warmup_epochs=1, epochs=1, max_iters=0,
                                     ft_epochs=1, scratch=False, probe=False, log=False,
                                     out_dir=os.path.join(tmp, f"runs{rank}")), **kw})


def join(rank, tmp, name):
    dist.init_process_group("gloo", init_method="file://" + os.path.join(tmp, name), rank=rank, world_size=2)


def run_child(rank, tmp, pool, enc):
    """One process of two (WORLD_SIZE=2 in the environment). 1) one DDP step on this rank's batch;
    2) main with --load; 3) main pre-training on `pool` plus a one-series source, recording the batches
    this process draws and the weights pretrain returns. Writes out{rank}.json (and rank 0 ddp_step.pt)."""
    out = {}
    join(rank, tmp, "store_step")
    r, world, dev = m.setup_distributed(torch.device("cpu"))
    model, opt = model_and_opt()
    x, lo, hi = batch(r)
    m.pretrain_step(m.wrap_distributed(model, world, dev), opt, x, lo, hi, torch.Generator().manual_seed(7 + r), 0.1,
                    "joint")
    if rank == 0:
        torch.save(model.state_dict(), os.path.join(tmp, "ddp_step.pt"))
    dist.destroy_process_group()

    join(rank, tmp, "store_load")
    out["load_keys"] = sorted(m.main(main_args(rank, tmp, load=enc)))

    batches, real_next, real_pool, real_pretrain = [], m.SourceSampler.next, m.load_pool, m.pretrain

    def spy_next(self):
        s, idx = real_next(self)
        batches.append([s, idx.tolist()])
        return s, idx

    def pretrain(*a, **k):
        res = real_pretrain(*a, **k)
        out["weights"] = [round(float(v.double().sum()), 10) for v in res[0].state_dict().values()]
        out.update({key: res[3][key] for key in ("steps", "left_out", "world", "pool")})
        return res
    m.SourceSampler.next = spy_next
    m.load_pool = lambda names, d: real_pool(names, d) + [m.Source("one", np.ones((1, 1, 20)))]
    m.pretrain = pretrain
    join(rank, tmp, "store_pre")
    out["pretrain_keys"] = sorted(m.main(main_args(rank, tmp, pretrain=pool)))
    out["batches"] = batches
    with open(os.path.join(tmp, f"out{rank}.json"), "w") as fh:
        json.dump(out, fh)
