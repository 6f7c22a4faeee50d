#!/usr/bin/python3
"""PyTorch peer for bench/attention_bench.cc: the same attention, forward and
backward, 8 heads, d = 64, f32, causal and not, as a user of this machine
would write it in Debian's PyTorch 1.13 (which has no fused
scaled_dot_product_attention): (q @ kᵀ) * scale, masked_fill(-inf) for the
causal mask, softmax, @ v, and autograd's backward.

Run it with Debian's interpreter (BENCHMARKING.md):

  /usr/bin/python3 bench/torch_attention.py                 # n = 512 … 16384
  /usr/bin/python3 bench/torch_attention.py --n 4096 --reps 5 --json out.json

Settings, the fairest for PyTorch on this machine, set here and printed:
2 threads (torch.set_num_threads), OPENBLAS_CORETYPE unset (the machine's
default halves OpenBLAS), GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (without it
page faults make PyTorch several times slower at large n). Every (n, mask)
runs in a fresh process, so its peak RSS is its own; one warm-up step, then
the median (and min, max) of --reps steps (at least 3). A configuration
whose n×n intermediates cannot fit in memory is not run, and the output
says how much it would have needed.

GFLOP/s use the model counts of BENCHMARKING.md (per visible (query, key)
pair 4·d forward, 8·d backward; a causal mask leaves n(n+1)/2 of the n²
pairs, although PyTorch computes all of them); --peak-gflops (the 2-thread
FMA peak printed by attention_bench) adds the share of it.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HEADS = 8
HEAD_DIM = 64
THREADS = 2


OPENBLAS_DIRS = {
    "openmp": "/usr/lib/x86_64-linux-gnu/openblas-openmp",
    "pthread": "/usr/lib/x86_64-linux-gnu/openblas-pthread",
}


def settings_env(openblas):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    if openblas in OPENBLAS_DIRS:
        # Debian's alternatives pick one OpenBLAS build system-wide; this
        # chooses one for PyTorch's processes alone.
        env["LD_LIBRARY_PATH"] = OPENBLAS_DIRS[openblas]
    env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
    env["OMP_NUM_THREADS"] = str(THREADS)
    return env


def mem_available_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def needed_bytes(n):
    # Live at the backward's peak: softmax's saved output P, the gradient
    # of P, and the gradient of the scores (h·n² floats each); the causal
    # mask and the forward's temporaries come and go before that.
    return 3 * HEADS * n * n * 4


def child(n, causal, reps):
    import torch

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    shape = (1, HEADS, n, HEAD_DIM)
    q = torch.empty(shape).uniform_(-1, 1).requires_grad_()
    k = torch.empty(shape).uniform_(-1, 1).requires_grad_()
    v = torch.empty(shape).uniform_(-1, 1).requires_grad_()
    do = torch.empty(shape).uniform_(-1, 1)
    scale = HEAD_DIM ** -0.5
    mask = torch.ones(n, n, dtype=torch.bool).triu(1) if causal else None

    def forward():
        s = (q @ k.transpose(-2, -1)) * scale
        if mask is not None:
            s = s.masked_fill(mask, float("-inf"))
        return torch.softmax(s, dim=-1) @ v

    fwd, bwd, step = [], [], []
    for rep in range(reps + 1):  # the first is the warm-up
        for t in (q, k, v):
            t.grad = None
        t0 = time.perf_counter()
        o = forward()
        t1 = time.perf_counter()
        o.backward(do)
        t2 = time.perf_counter()
        del o
        if rep > 0:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            step.append(t2 - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "fwd_s": statistics.median(fwd),
        "bwd_s": statistics.median(bwd),
        "fwdbwd_s": statistics.median(step),
        "fwdbwd_s_min": min(step),
        "fwdbwd_s_max": max(step),
        "peak_rss_bytes": rss,
        "threads": torch.get_num_threads(),
    }


def describe_torch():
    import torch

    torch.set_num_threads(THREADS)
    blas = [l.strip() for l in torch.__config__.show().splitlines() if "BLAS" in l]
    blas_libraries = sorted({
        os.path.realpath(l.split()[-1])
        for l in open("/proc/self/maps")
        if "blas" in l.split()[-1]
    })
    return {
        "python": sys.executable,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "blas": "; ".join(b[b.find("BLAS_INFO"):].split(",")[0] for b in blas),
        "blas_libraries": blas_libraries,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "(unset)"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+",
                        default=[512, 1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--mask", choices=["full", "causal", "both"], default="both")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--peak-gflops", type=float, default=0.0,
                        help="2-thread f32 FMA peak, for %% of peak")
    parser.add_argument("--openblas", choices=["system", "openmp", "pthread"],
                        default="system",
                        help="which Debian OpenBLAS build PyTorch loads "
                             "(system: the alternatives' choice)")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--child", nargs=2, metavar=("N", "CAUSAL"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    reps = max(3, args.reps)

    if args.child:
        result = child(int(args.child[0]), args.child[1] == "1", reps)
        result["blas_libraries"] = describe_torch()["blas_libraries"]
        print(json.dumps(result))
        return

    env = settings_env(args.openblas)
    info = json.loads(subprocess.run(
        [sys.executable, "-c",
         "import json, sys; sys.path.insert(0, %r); import torch_attention as t;"
         " print(json.dumps(t.describe_torch()))" % os.path.dirname(os.path.abspath(__file__))],
        env=env, check=True, capture_output=True, text=True).stdout)
    print("PyTorch attention peer (bench/torch_attention.py)")
    for key, value in info.items():
        print(f"  {key}: {value}")
    print(f"  shape: [1, {HEADS}, n, {HEAD_DIM}] f32; warm-up + median of {reps}; "
          "fresh process per (n, mask)")
    header = (f"{'mask':<7}{'n':>7}{'fwd_ms':>11}{'bwd_ms':>11}{'fwdbwd_ms':>11}"
              f"{'min':>10}{'max':>10}{'GFLOP/s':>9}{'%peak':>7}{'rss_MiB':>9}")
    print(header)
    results = []
    masks = ["full", "causal"] if args.mask == "both" else [args.mask]
    for n in args.n:
        for mask in masks:
            causal = mask == "causal"
            row = {"n": n, "mask": mask}
            need, avail = needed_bytes(n), mem_available_bytes()
            if need > 0.85 * avail:
                row["error"] = (f"out of memory: needs >= {need / 2**30:.1f} GiB, "
                                f"{avail / 2**30:.1f} GiB available")
            else:
                proc = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--child", str(n),
                     "1" if causal else "0", "--reps", str(reps)],
                    env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    row["error"] = f"failed (exit {proc.returncode}): {tail}"
                else:
                    row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            results.append(row)
            if "error" in row:
                print(f"{mask:<7}{n:>7}  {row['error']}")
                continue
            pairs = HEADS * (n * (n + 1) / 2 if causal else n * n)
            gflops = pairs * 12 * HEAD_DIM / row["fwdbwd_s"] * 1e-9
            row["fwdbwd_GFLOPs"] = gflops
            pct = f"{100 * gflops / args.peak_gflops:.1f}" if args.peak_gflops else "-"
            print(f"{mask:<7}{n:>7}{row['fwd_s'] * 1e3:>11.2f}{row['bwd_s'] * 1e3:>11.2f}"
                  f"{row['fwdbwd_s'] * 1e3:>11.2f}{row['fwdbwd_s_min'] * 1e3:>10.2f}"
                  f"{row['fwdbwd_s_max'] * 1e3:>10.2f}{gflops:>9.1f}{pct:>7}"
                  f"{row['peak_rss_bytes'] / 2**20:>9.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": info, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
