#!/usr/bin/env python3
"""timm's Asymmetric Loss in PyTorch on the GPU: the baseline of scripts/gpu_check.sh.

    torch_asl_baseline.py [--shapes 4096x80,1024x1000,...]
        Times forward + backward of timm's AsymmetricLossMultiLabel and
        AsymmetricLossSingleLabel (default arguments, f32 logits) in eager mode and under
        torch.compile, with CUDA events (median of 15 samples), and prints one line
        `ASLJSON {...}` per (loss, shape, mode). Exits 0 with a message when PyTorch, timm or
        a CUDA device is missing.

    torch_asl_baseline.py --report FILE...
        Reads ASLJSON lines (from the asymloss CUDA bench binary run with --table and from the
        mode above) and prints the comparison table.
"""
import json
import sys

DEFAULT_SHAPES = [(4096, 80), (1024, 1000), (4096, 9605), (64, 100000)]


def parse_shapes(text):
    return [tuple(int(v) for v in s.split("x")) for s in text.split(",") if s]


def median_ms(torch, fn, samples=15):
    """Median milliseconds per call; each sample times enough calls to last about 2 ms."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    one = max(start.elapsed_time(end), 1e-3)
    batch = max(1, min(1000, int(2.0 / one + 0.999)))
    times = []
    for _ in range(samples):
        start.record()
        for _ in range(batch):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / batch)
    times.sort()
    return times[len(times) // 2]


def measure(shapes):
    try:
        import torch
    except ImportError:
        print("torch baseline skipped: PyTorch is not installed")
        return 0
    if not torch.cuda.is_available():
        print("torch baseline skipped: torch.cuda.is_available() is False")
        return 0
    try:
        import timm
        from timm.loss import AsymmetricLossMultiLabel, AsymmetricLossSingleLabel
    except ImportError as e:
        print(f"torch baseline skipped: timm is not installed ({e})")
        return 0

    device = torch.cuda.get_device_name(0)
    versions = f"torch {torch.__version__}, timm {timm.__version__}"
    print(f"torch baseline on {device} ({versions})")
    gen = torch.Generator(device="cuda").manual_seed(0)
    for rows, cols in shapes:
        x = (torch.rand(rows, cols, device="cuda", generator=gen) * 16 - 8).requires_grad_(True)
        y = (torch.rand(rows, cols, device="cuda", generator=gen) < 0.1).float()
        t = torch.randint(cols, (rows,), device="cuda", generator=gen)
        for loss_name, module, target in [
            ("multi_label", AsymmetricLossMultiLabel().cuda(), y),
            ("single_label", AsymmetricLossSingleLabel().cuda(), t),
        ]:
            for mode in ["eager", "compile"]:
                fn_loss = module if mode == "eager" else torch.compile(module)

                def step():
                    x.grad = None
                    fn_loss(x, target).backward()

                record = {"device": device, "loss": loss_name, "rows": rows, "cols": cols,
                          "dtype": "f32", "pass": "fused", "mode": mode, "versions": versions}
                try:
                    record["ms"] = round(median_ms(torch, step), 6)
                except Exception as e:  # torch.compile can fail on some setups
                    record["error"] = f"{type(e).__name__}: {e}"[:300]
                print("ASLJSON " + json.dumps(record), flush=True)
                del fn_loss
            torch.cuda.empty_cache()
    return 0


def report(paths):
    ours, torch_ms = {}, {}
    for path in paths:
        with open(path) as f:
            for line in f:
                if not line.startswith("ASLJSON "):
                    continue
                r = json.loads(line[len("ASLJSON "):])
                key = (r["loss"], r["rows"], r["cols"])
                if "mode" in r:
                    torch_ms[key + (r["mode"],)] = r.get("ms")
                else:
                    ours[key] = r
    if not ours:
        print("no asymloss results to report")
        return 1
    device = next(iter(ours.values()))["device"]
    print(f"\nasymloss CUDA, fused forward+backward, f32 logits, on {device}")
    head = (f"{'loss':<13} {'shape':>12} {'ms':>9} {'GB/s':>8} {'% copy':>7} "
            f"{'eager ms':>9} {'compile ms':>10} {'x eager':>8} {'x compile':>9}")
    print(head)
    print("-" * len(head))
    by_size = sorted(ours.items(), key=lambda kv: (kv[0][0], kv[0][1] * kv[0][2]))
    for (loss, rows, cols), r in by_size:
        eager = torch_ms.get((loss, rows, cols, "eager"))
        comp = torch_ms.get((loss, rows, cols, "compile"))

        def fmt(v, spec):
            return format(v, spec) if v is not None else "-"

        xe = eager / r["ms"] if eager else None
        xc = comp / r["ms"] if comp else None
        print(f"{loss:<13} {f'{rows}x{cols}':>12} {r['ms']:>9.4f} {r['gbs']:>8.1f} "
              f"{r['pct_copy']:>7.1f} {fmt(eager, '>9.4f'):>9} {fmt(comp, '>10.4f'):>10} "
              f"{fmt(xe, '>8.2f'):>8} {fmt(xc, '>9.2f'):>9}")
    print("% copy: GB/s against a device-to-device copy of the logits in the same run; "
          "x eager / x compile: timm's time divided by ours (higher is better).")
    return 0


def main(argv):
    if argv and argv[0] == "--report":
        return report(argv[1:])
    shapes = DEFAULT_SHAPES
    if len(argv) >= 2 and argv[0] == "--shapes":
        shapes = parse_shapes(argv[1])
    return measure(shapes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
