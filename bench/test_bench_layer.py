"""Benchmarks of crnn.Layer / Stack against a vectorised NumPy RNN and
torch.nn.RNN (when torch imports), plus the GEMM ceiling.

Each group holds the contenders of one (config, pass, dtype, threads); the
times become ratios, GF/s and % of the GEMM ceiling in bench/ratios.py, which
reads extra_info: config, pass ("fwd" | "fwd+bwd" | "gemm"), dtype, threads,
impl, flops, shape. The groups the performance targets read are measured a
second time by test_interleaved, every contender once per round (at two
threads a block of calls after a pause), rounds repeated
(extra_info["interleaved"]: {impl: [seconds]}, flops per impl).

Nominal FLOPs per layer and direction: forward 2*T*B*(D*H + H*H), forward +
backward 6*T*B*(D*H + H*H). Every contender computes the same thing: hs and
h_last forward; dx, dh0 and all parameter gradients backward (the torch model
carries crnn's weights; test_baselines_match_crnn checks the values once).
"""
import os
import time

import numpy as np
import pytest
import scipy.linalg.blas as sblas
from harness import limit_threads, measure, need_torch, torch
from numpy_rnn import NumpyBiStack, NumpyRNN, torch_rnn_from_layer, torch_rnn_from_stack

import crnn

# (T, B, D, H)
CONFIGS = {
    "LAT": (1000, 1, 32, 128),
    "S": (100, 32, 64, 128),
    "M": (100, 64, 256, 512),
    "L": (50, 128, 1024, 1024),
}
LARGE = {"M", "L"}
BI2 = (100, 32, 64, 256)                 # Stack of two BiLayer(concat)
TOK = (100, 32, 100, 128)                # token ids in [0, 100), H = 128
TOKPROJ = (1, 3200, 100, 128)            # T*B rows as one step: the input projection alone
GEMM_N = 2048

DTYPES = [np.float32, np.float64]
THREADS = [1, 2]
PASSES = ["fwd", "fwd+bwd"]
IMPLS = ["crnn", "numpy", "torch"]


def layer_flops(T, B, D, H, pas):
    return (2 if pas == "fwd" else 6) * T * B * (D * H + H * H)


def data(shape_tbd, H_out, dtype, seed=0):
    rng = np.random.default_rng(seed)
    T, B, D = shape_tbd
    x = rng.standard_normal((T, B, D)).astype(dtype)
    dy = rng.standard_normal((T, B, H_out)).astype(dtype)
    return x, dy


def cases(names, impls, large=()):
    """Parameters ordered so that one group's contenders run back to back; a
    large config's forward + backward group starts with the GEMM ceiling
    ("gemm"), so that its % of the ceiling compares two measurements taken
    seconds apart (a shared machine's speed drifts over minutes)."""
    out = []
    for name in names:
        marks = [pytest.mark.large] if name in large else []
        for dt in DTYPES:
            for n in THREADS:
                for pas in PASSES:
                    ceiling = ["gemm"] if name in large and pas == "fwd+bwd" else []
                    for impl in ceiling + impls:
                        out.append(pytest.param(name, np.dtype(dt).name, n, pas, impl, marks=marks,
                                                id=f"{name}-{np.dtype(dt).name}-{n}T-{pas}-{impl}"))
    return out


def group_name(config, pas, dtype, threads):
    return f"{config} {pas} {dtype} {threads}T"


# --------------------------------------------------------------------------
# the timed calls of each contender

def crnn_fn(module, x, dy, pas, need_dx=True):
    if pas == "fwd":
        return lambda: module.forward(x)

    def fwd_bwd():
        module.forward(x)
        module.backward(dy, need_dx=need_dx)
    return fwd_bwd


def numpy_fn(model, x, dy, pas):
    if pas == "fwd":
        return lambda: model.forward(x)

    def fwd_bwd():
        model.forward(x)
        model.backward(dy)
    return fwd_bwd


def torch_fn(rnn, x, dy, pas):
    """Forward under no_grad (inference); forward + backward with dx, fresh
    .grad each call (set_to_none), as a training step does."""
    xt = torch.from_numpy(x)
    if pas == "fwd":
        def fwd():
            with torch.no_grad():
                rnn(xt)
        return fwd
    xt.requires_grad_(True)
    dyt = torch.from_numpy(dy)

    def fwd_bwd():
        rnn.zero_grad(set_to_none=True)
        xt.grad = None
        out, _ = rnn(xt)
        out.backward(dyt)
    return fwd_bwd


def module_fn(impl, module, x, dy, pas):
    """The timed call of contender impl ("crnn", "numpy", "torch") for a crnn
    Layer or Stack of BiLayers: crnn itself, or the baseline carrying its weights."""
    if impl == "crnn":
        return crnn_fn(module, x, dy, pas)
    stack = isinstance(module, crnn.Stack)
    if impl == "numpy":
        model = NumpyBiStack.from_stack(module) if stack else NumpyRNN.from_layer(module)
        return numpy_fn(model, x, dy, pas)
    need_torch()
    rnn = torch_rnn_from_stack(module) if stack else torch_rnn_from_layer(module)
    return torch_fn(rnn, x, dy, pas)


def gemm_fn(dtype):
    """The ceiling: ?GEMM on 2048 x 2048 through SciPy's BLAS (the one crnn calls)."""
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((GEMM_N, GEMM_N)).astype(dtype))
    b = np.asfortranarray(rng.standard_normal((GEMM_N, GEMM_N)).astype(dtype))
    c = np.zeros((GEMM_N, GEMM_N), dtype, order="F")
    gemm = sblas.sgemm if dtype == "float32" else sblas.dgemm
    return lambda: gemm(1.0, a, b, beta=0.0, c=c, overwrite_c=True)


def bi2_stack(dtype):
    """BI2: a Stack of two BiLayer(concat)."""
    _, _, D, H = BI2
    return crnn.Stack([crnn.BiLayer(D, H, dtype=dtype, seed=0),
                       crnn.BiLayer(2 * H, H, dtype=dtype, seed=1)])


def contender(config, impl, dtype, pas, threads):
    """(the timed call, extra_info) of one contender of one group.

    config: LAT, S, M, L (one Layer), BI2 (vs nn.RNN(num_layers=2,
    bidirectional=True)), TOK or TOKPROJ (impl crnn-tokens / crnn-onehot:
    token ids vs the dense one-hot input through the same Layer), GEMM;
    impl "gemm" is the 2048² ceiling in any group."""
    info = dict(config=config, impl=impl, dtype=dtype, threads=threads, **{"pass": pas})
    if impl == "gemm":
        return gemm_fn(dtype), dict(info, shape=dict(M=GEMM_N, N=GEMM_N, K=GEMM_N),
                                    flops=2 * GEMM_N ** 3)
    if config in ("TOK", "TOKPROJ"):
        # TOKPROJ: T=1 and B=T*B rows, activation identity, h0=None: no
        # recurrence GEMM runs, so the time is the input projection (gather
        # vs GEMM) plus the call's fixed costs. The one-hot array is built
        # before timing; the one-hot backward skips dx (need_dx=False), as
        # tokens do.
        T, B, D, H = TOK if config == "TOK" else TOKPROJ
        act = "tanh" if config == "TOK" else "identity"
        layer = crnn.Layer(D, H, activation=act, dtype=dtype, seed=0)
        rng = np.random.default_rng(0)
        ids = rng.integers(0, D, size=(T, B))
        dy = rng.standard_normal((T, B, H)).astype(dtype)
        x = ids if impl == "crnn-tokens" else np.eye(D, dtype=dtype)[ids]
        return crnn_fn(layer, x, dy, pas, need_dx=False), dict(
            info, shape=dict(T=T, B=B, D=D, H=H), flops=layer_flops(T, B, D, H, pas))
    if config == "BI2":
        T, B, D, H = BI2
        stack = bi2_stack(dtype)
        # BiLayer may run its two directions on two cores; at 1 thread it must
        # not, so that every contender uses one core (at 2 threads: crnn's default)
        for m in stack:
            m.parallel = False if threads == 1 else None
        x, dy = data((T, B, D), 2 * H, dtype)
        fn = module_fn(impl, stack, x, dy, pas)
        flops = 2 * (layer_flops(T, B, D, H, pas) + layer_flops(T, B, 2 * H, H, pas))
        return fn, dict(info, shape=dict(T=T, B=B, D=D, H=H, layers=2, directions=2),
                        flops=flops, bilayer_parallel=stack[0].parallel)
    T, B, D, H = CONFIGS[config]
    layer = crnn.Layer(D, H, dtype=dtype, seed=0)
    x, dy = data((T, B, D), H, dtype)
    fn = module_fn(impl, layer, x, dy, pas)
    return fn, dict(info, shape=dict(T=T, B=B, D=D, H=H), flops=layer_flops(T, B, D, H, pas))


def run_contender(benchmark, config, dtype, threads, pas, impl, group=None):
    fn, info = contender(config, impl, dtype, pas, threads)
    with limit_threads(threads):
        measure(benchmark, fn, group=group or group_name(config, pas, dtype, threads), **info)


def run_ceiling(benchmark, dtype, threads):
    """The run's own GEMM ceiling group, measured first and last."""
    run_contender(benchmark, "GEMM", dtype, threads, "gemm", "gemm",
                  group=f"GEMM {GEMM_N} {dtype} {threads}T")


# --------------------------------------------------------------------------
# the ceiling, first measurement (the last one closes the file): a shared
# machine's speed drifts during the run, and ratios.py takes the faster

@pytest.mark.parametrize("dtype", [np.dtype(d).name for d in DTYPES])
@pytest.mark.parametrize("threads", THREADS)
def test_gemm_ceiling_first(benchmark, dtype, threads):
    run_ceiling(benchmark, dtype, threads)


# --------------------------------------------------------------------------
# one group per (config, pass, dtype, threads), its contenders back to back:
# single layers LAT, S, M, L (M and L forward + backward open with the GEMM
# ceiling); BI2; token ids vs the dense one-hot input

@pytest.mark.parametrize("config,dtype,threads,pas,impl", cases(CONFIGS, IMPLS, LARGE))
def test_layer(benchmark, config, dtype, threads, pas, impl):
    run_contender(benchmark, config, dtype, threads, pas, impl)


@pytest.mark.parametrize("config,dtype,threads,pas,impl", cases(["BI2"], IMPLS))
def test_bi2(benchmark, config, dtype, threads, pas, impl):
    run_contender(benchmark, config, dtype, threads, pas, impl)


@pytest.mark.parametrize("config,dtype,threads,pas,impl",
                         cases(["TOK", "TOKPROJ"], ["crnn-tokens", "crnn-onehot"]))
def test_tokens(benchmark, config, dtype, threads, pas, impl):
    run_contender(benchmark, config, dtype, threads, pas, impl)


# --------------------------------------------------------------------------
# the groups the performance targets read, again, with their contenders'
# rounds interleaved: round r runs every contender once (the order rotating
# from round to round), so that a slow spell of the shared machine hits every
# contender alike. One benchmark per group; the per-contender times go to
# extra_info["interleaved"] ({impl: [seconds per timed call]}), which
# ratios.py prefers for the targets.
#
# Not call by call at two threads: there each library's idle worker threads
# keep spinning on the second core for a while after its call (OpenBLAS's for
# up to about 0.1 s), and the next contender's two-thread products wait for
# that core. Interleaved, crnn's LAT float32 forward took 6.3 ms at 2 threads
# against 1.1-1.4 ms back to back (runs of 2026-11-27), a cost no program
# that calls one library pays. The two-thread groups of M and L, whose target
# is a fraction of the GEMM measured beside them, are interleaved in blocks
# instead: a pause of IL_PAUSE seconds (the other library's threads go to
# sleep), one untimed call, then IL_BLOCK timed calls of one contender. Back
# to back, the one GEMM measurement of a group moved between 88 and 169 GF/s
# (float32, two threads) within one run. The other two-thread groups that
# targets read (LAT, S, BI2) are interleaved the same way, so that every
# target's ratio compares calls made in the same minutes; back to back, BI2
# float64's crnn group once ran at 35 GF/s and the same group alone right
# after at 51 (runs of 2026-11-27). TOKPROJ, whose two contenders are both
# crnn, is interleaved in blocks without a pause on one and two threads
# (il_turn). At one thread every other contender's turn is one untimed call,
# then one timed call: the first call after another library's runs with the
# caches full of that library's data (`python bench/first_call.py LAT fwd`,
# 2026-11-27: crnn's float64 forward 2.78 ms first, 2.35 second; torch's
# 17.9 / 16.9), a cost that hits the fastest contender hardest and that a
# program calling one library in a loop does not pay.

INTERLEAVED = [("LAT", "fwd", 1), ("LAT", "fwd+bwd", 1), ("S", "fwd+bwd", 1),
               ("M", "fwd+bwd", 1), ("L", "fwd+bwd", 1), ("TOKPROJ", "fwd", 1),
               ("LAT", "fwd", 2), ("LAT", "fwd+bwd", 2), ("S", "fwd+bwd", 2),
               ("M", "fwd+bwd", 2), ("L", "fwd+bwd", 2), ("BI2", "fwd+bwd", 2),
               ("TOKPROJ", "fwd", 2)]
# seconds per group, roughly, and at least 9 rounds: until 0.4.8 (4 s, 5
# rounds) a round of L's groups (3-6 s) left them the minimum, 5 rounds,
# whose median moved with one slow round (L float32 one thread: 90.5, 82.0,
# 89.0 % of the GEMM in three runs)
IL_BUDGET = float(os.environ.get("CRNN_BENCH_IL_BUDGET", "10.0"))
IL_MIN_ROUNDS, IL_MAX_ROUNDS = 9, 100
IL_PAUSE, IL_BLOCK, IL_BLOCK_SECONDS = 0.3, 2, 0.05                  # two threads only
IL_TOK_BLOCK = 5                                                     # TOKPROJ


def il_turn(config, threads, seconds):
    """One contender's turn in a round: (pause in seconds, untimed calls,
    timed calls), for a call of about `seconds`. At two threads a pause,
    then a block: IL_BLOCK timed calls, or as many as take IL_BLOCK_SECONDS
    when that is more (at most 20: LAT's 2-3 ms calls). TOKPROJ's
    calls are memory-bound: right after the other contender's call (a 1.6-3.3
    MB output of its own) a token call took 1.5-2x as long as in a row of
    token calls (0.31 against 0.20 ms, float32, run of 07:42 UTC), a cost no
    program that calls one of the two pays, so its turn is an untimed call
    and a block of IL_TOK_BLOCK timed ones; with no pause at two threads,
    where both contenders run on crnn's own threads and no other library's
    threads spin. At one thread otherwise one untimed call, then one timed
    call (no pause: one thread leaves no workers spinning)."""
    if config == "TOKPROJ":
        return 0.0, 1, IL_TOK_BLOCK
    if threads > 1:
        return IL_PAUSE, 1, max(IL_BLOCK, min(20, int(IL_BLOCK_SECONDS / max(seconds, 1e-9))))
    return 0.0, 1, 1


def interleaved_cases():
    out = []
    for config, pas, threads in INTERLEAVED:
        marks = [pytest.mark.large] if config in LARGE else []
        impls = (["crnn-tokens", "crnn-onehot"] if config == "TOKPROJ" else
                 (["gemm"] if config in LARGE else []) + IMPLS)
        for dt in DTYPES:
            out.append(pytest.param(config, np.dtype(dt).name, threads, pas, impls, marks=marks,
                                    id=f"{config}-{np.dtype(dt).name}-{threads}T-{pas}"))
    return out


@pytest.mark.parametrize("config,dtype,threads,pas,impls", interleaved_cases())
def test_interleaved(benchmark, config, dtype, threads, pas, impls):
    fns, infos = {}, {}
    for impl in impls:
        if impl == "torch" and torch is None:
            continue
        fns[impl], infos[impl] = contender(config, impl, dtype, pas, threads)
    times = {impl: [] for impl in fns}

    def rounds():
        order = list(fns)
        turns, per_round = {}, 0.0
        for impl, fn in fns.items():
            fn()                                        # warm-up
            t0 = time.perf_counter()
            fn()
            seconds = time.perf_counter() - t0
            turns[impl] = il_turn(config, threads, seconds)
            pause, untimed, block = turns[impl]
            per_round += pause + (untimed + block) * seconds
        n = max(IL_MIN_ROUNDS, min(IL_MAX_ROUNDS, int(IL_BUDGET / per_round)))
        for r in range(n):
            for impl in order[r % len(order):] + order[:r % len(order)]:
                pause, untimed, block = turns[impl]
                time.sleep(pause)                       # the last contender's threads go idle
                for _ in range(untimed):
                    fns[impl]()
                for _ in range(block):
                    t = time.perf_counter()
                    fns[impl]()
                    times[impl].append(time.perf_counter() - t)

    with limit_threads(threads):
        benchmark.group = f"interleaved {group_name(config, pas, dtype, threads)}"
        benchmark.extra_info.update(config=config, dtype=dtype, threads=threads, impl="interleaved",
                                    flops={impl: info["flops"] for impl, info in infos.items()},
                                    loadavg=os.getloadavg()[0], **{"pass": pas})
        benchmark.pedantic(rounds, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info["interleaved"] = times


# --------------------------------------------------------------------------
# the ceiling, last measurement

@pytest.mark.parametrize("dtype", [np.dtype(d).name for d in DTYPES])
@pytest.mark.parametrize("threads", THREADS)
def test_gemm_ceiling(benchmark, dtype, threads):
    run_ceiling(benchmark, dtype, threads)


# --------------------------------------------------------------------------
# not timed: the contenders compute the same numbers

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_baselines_match_crnn(dtype):
    tol = 1e-4 if dtype == np.float32 else 1e-10
    T, B, D, H = 7, 3, 5, 6
    layer = crnn.Layer(D, H, dtype=dtype, seed=0)
    x, dy = data((T, B, D), H, dtype, seed=1)
    y, h = layer.forward(x)
    dx, dh0 = layer.backward(dy)
    ref = NumpyRNN.from_layer(layer)
    y2, h2 = ref.forward(x)
    dx2, dh02 = ref.backward(dy)
    for a, b in [(y, y2), (h, h2), (dx, dx2), (dh0, dh02)] + [
            (layer.grads[k], ref.grads[k]) for k in ref.grads]:
        assert b.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)

    stack = crnn.Stack([crnn.BiLayer(D, H, dtype=dtype, seed=0),
                        crnn.BiLayer(2 * H, H, dtype=dtype, seed=1)])
    x, dy = data((T, B, D), 2 * H, dtype, seed=2)
    ys, _ = stack.forward(x)
    dxs, _ = stack.backward(dy)
    bi = NumpyBiStack.from_stack(stack)
    np.testing.assert_allclose(bi.forward(x), ys, rtol=tol, atol=tol)
    np.testing.assert_allclose(bi.backward(dy), dxs, rtol=tol, atol=tol)

    if torch is None:
        return
    for module, rnn, (x, dy) in [(layer, torch_rnn_from_layer(layer), data((T, B, D), H, dtype, 3)),
                                 (stack, torch_rnn_from_stack(stack),
                                  data((T, B, D), 2 * H, dtype, 4))]:
        module.zero_grad()
        y, _ = module.forward(x)
        dx, _ = module.backward(dy)
        xt = torch.from_numpy(x).requires_grad_(True)
        out, _ = rnn(xt)
        out.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(out.detach().numpy(), y, rtol=tol, atol=tol)
        np.testing.assert_allclose(xt.grad.numpy(), dx, rtol=tol, atol=tol)
        tp = dict(rnn.named_parameters())
        for key, name in torch_names(module).items():
            np.testing.assert_allclose(tp[name].grad.numpy(), module.grads[key], rtol=tol, atol=tol)


def torch_names(module):
    """crnn parameter key -> the nn.RNN parameter that holds the same weight."""
    parts = {"W_xh": "weight_ih", "W_hh": "weight_hh", "b_h": "bias_ih"}
    if isinstance(module, crnn.Layer):
        return {k: f"{v}_l0" for k, v in parts.items()}
    return {f"{k}.{sub}.{p}": f"{v}_l{k}{sfx}" for k in range(len(module))
            for sub, sfx in (("fwd", ""), ("bwd", "_reverse")) for p, v in parts.items()}
