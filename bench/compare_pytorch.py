#!/usr/bin/env python3
"""Side-by-side: timm's asymmetric losses in PyTorch (eager and torch.compile) against `asl`.

Installs nothing. Needs python3 with torch, timm and numpy, and the `asl` binary (built with
`cargo build --release`; pass --asl PATH or let it find target/release/asl).

For each shape it:
  1. checks that both compute the same loss (timm in float64 vs `asl eval` on the same .npy
     files, relative difference below 1e-5);
  2. times timm forward+backward in eager mode and under torch.compile (median of --repeat runs
     after warm-up), on the same device and thread count as `asl`;
  3. runs `asl bench --json --pass fused` on the same shapes, backend and threads;
  4. prints the ratios (how many times faster `asl` is).

Usage:
  python3 bench/compare_pytorch.py [--device cpu|cuda] [--threads N] [--loss multi-label|single-label]
      [--shape 256x9605 ...] [--targets f32|u8] [--asl target/release/asl] [--repeat 20] [--json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--loss", default="multi-label", choices=["multi-label", "single-label"])
    p.add_argument("--shape", action="append", default=None)
    p.add_argument("--targets", default="f32", choices=["f32", "u8"])
    p.add_argument("--asl", default=None)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--no-asl", action="store_true", help="time PyTorch only")
    p.add_argument("--json", action="store_true", help="print one JSON object per shape")
    return p.parse_args()


def find_asl(explicit):
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(__file__))
    cand = os.path.join(here, "..", "target", "release", "asl")
    if os.path.exists(cand):
        return cand
    sys.exit("error: cannot find the asl binary; build it with `cargo build --release` or pass --asl")


def make_inputs(torch, rows, cols, loss, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Mostly easy negatives, a few positives: the regime ASL is made for.
    x = torch.randn(rows, cols, generator=g) * 3.0 - 2.0
    if loss == "multi-label":
        y = (torch.rand(rows, cols, generator=g) < 0.03).float()
    else:
        y = torch.randint(0, cols, (rows,), generator=g)
    return x.to(device), y.to(device)


def timm_loss(timm, loss):
    from timm.loss import AsymmetricLossMultiLabel, AsymmetricLossSingleLabel

    if loss == "multi-label":
        return AsymmetricLossMultiLabel()  # timm 1.0.31 defaults: batchmean
    return AsymmetricLossSingleLabel()


def time_torch(torch, fn, x, y, repeat, device):
    def step():
        xi = x.detach().requires_grad_(True)
        out = fn(xi, y)
        out.backward()
        return xi.grad

    for _ in range(3):
        step()
    times = []
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check_same_loss(np, torch, crit, x, y, asl, loss, targets, backend, env):
    with tempfile.TemporaryDirectory() as d:
        xp, yp = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
        np.save(xp, x.cpu().numpy().astype(np.float32))
        if loss == "multi-label":
            yy = y.cpu().numpy().astype(np.uint8 if targets == "u8" else np.float32)
        else:
            yy = y.cpu().numpy().astype(np.int64)
        np.save(yp, yy)
        out = subprocess.run(
            [asl, "eval", "--logits", xp, "--targets", yp, "--loss", loss, "--backend", backend,
             "--json"],
            capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.exit(f"error: asl eval failed: {out.stderr.strip()}")
        got = json.loads(out.stdout)["loss"]
    want = float(crit(x.double(), y).item())
    rel = abs(got - want) / max(abs(want), 1e-30)
    if rel > 1e-5:
        sys.exit(f"error: losses differ: asl {got} vs timm {want} (relative {rel:.2e})")
    return got, want, rel


def main():
    a = parse_args()
    try:
        import numpy as np
        import timm
        import torch
    except ImportError as e:
        sys.exit(f"error: this script needs torch, timm and numpy ({e}); it installs nothing")
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch sees no GPU")
    torch.set_num_threads(a.threads)
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    shapes = a.shape or ["256x9605", "4096x80"]
    asl = None if a.no_asl else find_asl(a.asl)
    backend = "cpu" if a.device == "cpu" else "cuda"
    crit = timm_loss(timm, a.loss)
    compiled = None if a.no_compile else torch.compile(crit)
    rows_out = []
    for s in shapes:
        r, c = (int(v) for v in s.lower().split("x"))
        x, y = make_inputs(torch, r, c, a.loss, a.device)
        row = {"shape": s, "loss": a.loss, "device": a.device, "threads": a.threads,
               "torch": torch.__version__, "timm": timm.__version__}
        if asl:
            got, want, rel = check_same_loss(np, torch, crit, x, y, asl, a.loss, a.targets, backend,
                                             env)
            row.update(asl_loss=got, timm_f64_loss=want, rel_diff=rel)
        row["eager_s"] = time_torch(torch, crit, x, y, a.repeat, a.device)
        if compiled is not None:
            row["compile_s"] = time_torch(torch, compiled, x, y, a.repeat, a.device)
        if asl:
            cmd = [asl, "bench", "--json", "--backend", backend, "--loss", a.loss, "--shape", s,
                   "--pass", "fused"]
            if a.loss == "multi-label":
                cmd += ["--targets", a.targets]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                sys.exit(f"error: asl bench failed: {out.stderr.strip()}")
            res = json.loads(out.stdout)["results"][0]
            row["asl_s"] = res["median_s"]
            row["asl_gbps"] = res["gb_per_s"]
            row["asl_copy_pct"] = res["percent_of_copy"]
            row["x_vs_eager"] = row["eager_s"] / row["asl_s"]
            if "compile_s" in row:
                row["x_vs_compile"] = row["compile_s"] / row["asl_s"]
        rows_out.append(row)
        if a.json:
            print(json.dumps(row))
    if not a.json:
        print(f"{'shape':>10} {'eager ms':>9} {'compile ms':>10} {'asl ms':>8} {'x eager':>8} "
              f"{'x compile':>9}  loss check")
        for row in rows_out:
            f = lambda k, m=1e3: f"{row[k] * m:.3f}" if k in row else "-"
            chk = f"rel {row['rel_diff']:.1e}" if "rel_diff" in row else "-"
            print(f"{row['shape']:>10} {f('eager_s'):>9} {f('compile_s'):>10} {f('asl_s'):>8} "
                  f"{f('x_vs_eager', 1):>8} {f('x_vs_compile', 1):>9}  {chk}")


if __name__ == "__main__":
    main()
