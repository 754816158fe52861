"""Golden files: crnn's results as plain .npz files that another framework's
tests can load, and `check-against`, which compares another framework's
results in the same format with crnn's.

    crnn golden --out DIR [--dtype float64|float32|both] [--seed S]
    crnn check-against PATH [--golden DIR] [--rtol R] [--strict] [--quiet]

The format ("crnn-golden", version 1)
-------------------------------------
One uncompressed .npz per case, ``DIR/<case>.npz`` (``<case>`` ends in
``.float64`` or ``.float32``), with flat entry names:

    config          uint8: the UTF-8 JSON of ``module.config()``
                    (``json.loads(bytes(z["config"]))``)
    meta            uint8: UTF-8 JSON {"format": "crnn-golden", "format_version": 1,
                    "crnn_version", "case", "description", "features", "seed"}
    x               (T, B, D) float, or (T, B) int64 token ids in [0, D)
    lengths         (B,) int64 in [0, T]; absent: every sequence has length T
    h0/<path>       initial state(s); absent: zeros
    param/<name>    every parameter, crnn's names: param/W_xh, param/1.bwd.W_hh
    y               (T, B, out_features), 0 at padded steps
    state/<path>    final state(s)
    dy              (T, B, out_features): dL/dy (also random at padded steps)
    dstate/<path>   dL/d(final state); absent: zeros
    grad/<name>     dL/d(param <name>), one per parameter
    dx              (T, B, D) dL/dx, 0 at padded steps; absent for token input
    dh0/<path>      dL/dh0 (present also when h0 is absent: then at h0 = 0)

with L = Σ dy·y + Σ dstate·state. State paths name the arrays of a state
structure the way parameter prefixes do, without the trailing dot: a Layer's
state is one (B, H) array named plainly (``h0``, ``state``), a BiLayer's are
``h0/fwd`` and ``h0/bwd``, a Stack's ``h0/<i>`` for a Layer at index i and
``h0/<i>.fwd``, ``h0/<i>.bwd`` for a BiLayer. Float tensors have the case's
dtype. ``DIR/manifest.json`` documents the conventions and tolerances and
holds each file's SHA-256. The files are written with zipfile at a fixed
date (1980-01-01), entries sorted, so the same seed and crnn version give
bit-identical files; values come from crnn's C core and are checked against
``crnn.reference`` before anything is written.

check-against
-------------
For every case in PATH (a directory of .npz files, or one .npz): inputs and
parameters are taken from PATH's file, or, when it lacks them, from the file
of the same name in ``--golden DIR``; crnn recomputes the case; every output
tensor present in PATH is compared with crnn's:

    abs = max |a − b|          rel = abs / max(1, max |ref|)     (ref = crnn)

and passes when rel ≤ rtol (float64 cases 1e-10, float32 1e-4, by the case
config's dtype). Expected but absent tensors are listed as "missing", unknown
names as "extra"; both fail only with --strict. Exit status: 0 when everything
passed, 1 on any failure (including an unreadable or foreign file), 2 when
PATH does not exist or holds no .npz.
"""
import argparse
import hashlib
import io
import json
import os
import sys
import tempfile
import time
import zipfile
import zlib

import numpy as np

import crnn
from crnn import reference
from crnn.gradcheck import flatten_state, scaled_error
from crnn.layers import BiLayer, Layer, Stack

__all__ = ["generate", "check_against", "load_case", "compute", "state_paths", "CASES",
           "FORMAT", "FORMAT_VERSION", "RTOL", "GoldenError"]

FORMAT = "crnn-golden"
FORMAT_VERSION = 1
DTYPES = ("float64", "float32")
# check-against: max|a - b| / max(1, max|ref|) <= RTOL[dtype of the case]
RTOL = {"float64": 1e-10, "float32": 1e-4}
# generation: crnn vs crnn.reference, elementwise |a - r| / max(1, |r|) <= REF_TOL
REF_TOL = {"float64": 1e-12, "float32": 1e-4}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
STATE_KINDS = ("h0", "state", "dstate", "dh0")

CONVENTIONS = {
    "layout": "time-major: x is (T, B, D) floats, or (T, B) int64 token ids in [0, D) that act as "
              "one-hot input (a token case has no dx); y and dy are (T, B, out_features)",
    "layer": "a_t = W_xh x_t + W_hh h_prev + b_h; h_t = f(a_t); y_t = g(W_hy h_t + b_y) with an output "
             "projection (config output_size), else y_t = h_t. W_xh (H, D), W_hh (H, H), b_h (H,), "
             "W_hy (O, H), b_y (O,); bias=false removes b_h and b_y. h_prev is h0 (zeros when absent) "
             "at the first step a sequence processes",
    "activations": "f in tanh, relu, sigmoid, identity; g in identity, tanh, relu, sigmoid, softmax; "
                   "relu'(0) = 0; softmax is over the O features of each step and every probability "
                   "is clamped below at np.finfo(dtype).tiny (the smallest normal number)",
    "loss": "the stored gradients are those of L = sum(dy * y) + sum over the final state's arrays "
            "of sum(dstate * state): grad/<name> = dL/dparam, dx = dL/dx, dh0/<path> = dL/dh0",
    "lengths": "lengths[b] in [0, T] marks the valid prefix x[:lengths[b], b]; the rest is padding. "
               "Padded positions of x and dy hold random values on purpose: they must reach nothing. "
               "y and dx are exactly 0 at padded steps; lengths[b] = 0 gives state = h0, y = 0 and "
               "dh0 = dstate for that sequence. Absent lengths: every sequence has length T",
    "reverse": "a reverse layer (config reverse=true, and the bwd half of a BiLayer) processes each "
               "sequence from its own last valid step lengths[b] - 1 down to step 0 (as PyTorch's "
               "packed sequences); y_t stays at time index t; its final state is the one after step 0",
    "bilayer": "fwd (left to right) and bwd (reverse) Layers over the same input, merged per step: "
               "concat = [y_fwd, y_bwd] on the feature axis (fwd first), sum = y_fwd + y_bwd, "
               "mean = (y_fwd + y_bwd) / 2, mul = y_fwd * y_bwd; the state is the pair (fwd, bwd)",
    "stack": "modules applied in turn, each one's y is the next one's x; the state is a list with "
             "one entry per module; only module 0 may take token ids",
    "names": "param/<name>, grad/<name> use crnn's parameter names: W_xh for a Layer, fwd.W_xh / "
             "bwd.W_xh in a BiLayer, <i>.W_xh and <i>.fwd.W_xh in a Stack",
    "state_names": "<kind>/<path> for kind in h0, state, dstate, dh0; the path is the parameter "
                   "prefix without its trailing dot, and a Layer's single (B, H) array has no path: "
                   "Layer: h0; BiLayer: h0/fwd, h0/bwd; Stack [Layer, BiLayer]: h0/0, h0/1.fwd, h0/1.bwd",
    "absent": "absent h0 or dstate mean zeros; absent lengths mean all T; dh0 is always present",
    "dtype": "float tensors have the case's dtype (config dtype, also the .float64/.float32 suffix "
             "of the case name); a float32 case uses the float64 case's random draws rounded to "
             "float32 and crnn's float32 arithmetic",
    "files": "np.load(path) (allow_pickle=False, the default) reads every entry; config and meta are "
             "uint8 arrays of UTF-8 JSON: json.loads(bytes(z['config']))",
}

TOLERANCES = {
    "check_against": {
        "formula": "max|a - b| / max(1, max|ref|) <= rtol, per tensor, where ref is crnn's result "
                   "(absolute error for tensors of magnitude <= 1, relative to the tensor's largest "
                   "magnitude above that)",
        "rtol": RTOL,
    },
    "generation": {
        "formula": "elementwise |crnn - reference| / max(1, |reference|) <= tol for every stored "
                   "output and gradient, reference = crnn.reference in float64 arithmetic on the "
                   "stored inputs; a case beyond it is not written",
        "tol": REF_TOL,
    },
}


class GoldenError(ValueError):
    """A golden or result file that cannot be used (unreadable, foreign, inconsistent)."""


# --------------------------------------------------------------------------
# the cases

def _L(D, H, O=None, f="tanh", g="identity", **kw):
    return ("Layer", dict(input_size=D, hidden_size=H, output_size=O, activation=f,
                          output_activation=g, **kw))


def _Bi(D, H, O=None, f="tanh", g="identity", **kw):
    return ("BiLayer", dict(input_size=D, hidden_size=H, output_size=O, activation=f,
                            output_activation=g, **kw))


def _case(name, description, modules, T, B, *, tokens=False, lengths=None, h0=False, dstate=False,
          stack=None):
    return dict(name=name, description=description, modules=modules,
                stack=len(modules) > 1 if stack is None else stack, T=T, B=B, tokens=tokens,
                lengths=lengths, h0=h0, dstate=dstate)


# Every (f, g) pair with an output projection; each f without one; every merge;
# stacks of 2 and 3 modules. Names get ".float64" / ".float32" appended.
CASES = [
    _case("layer_tanh", "tanh, no output projection, h0 and dstate (the README example)",
          [_L(3, 5)], 6, 3, h0=True, dstate=True),
    _case("layer_relu", "relu, no projection, reverse, lengths with a zero, h0, dstate",
          [_L(4, 6, f="relu", reverse=True)], 7, 4, lengths=[7, 0, 4, 2], h0=True, dstate=True),
    _case("layer_sigmoid", "sigmoid, no projection, token input, no bias",
          [_L(6, 5, f="sigmoid", bias=False)], 5, 2, tokens=True),
    _case("layer_identity", "identity, no projection, lengths with a zero, dstate",
          [_L(3, 4, f="identity")], 5, 3, lengths=[5, 0, 2], dstate=True),
    _case("layer_tanh_identity", "tanh / identity output", [_L(3, 5, 4)], 6, 3),
    _case("layer_tanh_tanh", "tanh / tanh output, reverse",
          [_L(3, 5, 3, g="tanh", reverse=True)], 6, 3),
    _case("layer_tanh_relu", "tanh / relu output, lengths with a zero",
          [_L(4, 6, 4, g="relu")], 8, 4, lengths=[8, 3, 0, 8]),
    _case("layer_tanh_sigmoid", "tanh / sigmoid output, h0, dstate",
          [_L(3, 5, 2, g="sigmoid")], 6, 2, h0=True, dstate=True),
    _case("layer_tanh_softmax", "tanh / softmax output, token input, lengths",
          [_L(7, 6, 5, g="softmax")], 6, 3, tokens=True, lengths=[6, 4, 1]),
    _case("layer_relu_identity", "relu / identity output, no bias, h0",
          [_L(3, 5, 3, f="relu", bias=False)], 6, 3, h0=True),
    _case("layer_relu_tanh", "relu / tanh output, reverse, lengths",
          [_L(4, 5, 3, f="relu", g="tanh", reverse=True)], 7, 3, lengths=[3, 7, 5]),
    _case("layer_relu_relu", "relu / relu output, lengths, h0, dstate",
          [_L(3, 6, 4, f="relu", g="relu")], 6, 4, lengths=[6, 2, 5, 1], h0=True, dstate=True),
    _case("layer_relu_sigmoid", "relu / sigmoid output, token input, dstate",
          [_L(5, 4, 3, f="relu", g="sigmoid")], 6, 3, tokens=True, dstate=True),
    _case("layer_relu_softmax", "relu / softmax output, reverse, lengths with a zero, h0, dstate",
          [_L(3, 5, 4, f="relu", g="softmax", reverse=True)], 6, 3, lengths=[0, 6, 3],
          h0=True, dstate=True),
    _case("layer_sigmoid_identity", "sigmoid / identity output, lengths, dstate",
          [_L(4, 5, 3, f="sigmoid")], 7, 3, lengths=[7, 2, 4], dstate=True),
    _case("layer_sigmoid_tanh", "sigmoid / tanh output, no bias, h0",
          [_L(3, 4, 3, f="sigmoid", g="tanh", bias=False)], 5, 2, h0=True),
    _case("layer_sigmoid_relu", "sigmoid / relu output, reverse, dstate",
          [_L(3, 6, 4, f="sigmoid", g="relu", reverse=True)], 6, 3, dstate=True),
    _case("layer_sigmoid_sigmoid", "sigmoid / sigmoid output, lengths, h0",
          [_L(4, 5, 2, f="sigmoid", g="sigmoid")], 6, 3, lengths=[6, 1, 4], h0=True),
    _case("layer_sigmoid_softmax", "sigmoid / softmax output, one long sequence (T=12, B=1), h0",
          [_L(3, 8, 5, f="sigmoid", g="softmax")], 12, 1, h0=True),
    _case("layer_identity_identity", "identity / identity output (a linear RNN), h0, dstate",
          [_L(3, 4, 3, f="identity")], 6, 3, h0=True, dstate=True),
    _case("layer_identity_tanh", "identity / tanh output, reverse, token input, lengths",
          [_L(6, 5, 3, f="identity", g="tanh", reverse=True)], 6, 3, tokens=True, lengths=[4, 6, 2]),
    _case("layer_identity_relu", "identity / relu output, no bias, h0, dstate",
          [_L(3, 5, 4, f="identity", g="relu", bias=False)], 5, 3, h0=True, dstate=True),
    _case("layer_identity_sigmoid", "identity / sigmoid output, no bias, reverse, lengths, h0",
          [_L(4, 4, 3, f="identity", g="sigmoid", bias=False, reverse=True)], 6, 3,
          lengths=[6, 3, 5], h0=True),
    _case("layer_identity_softmax", "identity / softmax output, lengths, h0, dstate",
          [_L(3, 5, 4, f="identity", g="softmax")], 6, 3, lengths=[2, 6, 4], h0=True, dstate=True),
    _case("layer_zero_lengths", "every length 0: y = 0, state = h0, dh0 = dstate, zero gradients",
          [_L(3, 4, 3)], 4, 3, lengths=[0, 0, 0], h0=True, dstate=True),
    _case("bilayer_concat", "BiLayer tanh, merge concat, lengths with a zero, h0, dstate",
          [_Bi(4, 5, merge="concat")], 7, 4, lengths=[7, 5, 0, 2], h0=True, dstate=True),
    _case("bilayer_sum", "BiLayer relu with tanh output projection, merge sum, h0",
          [_Bi(3, 5, 3, f="relu", g="tanh", merge="sum")], 6, 3, h0=True),
    _case("bilayer_mean", "BiLayer tanh, merge mean, token input, lengths, dstate",
          [_Bi(6, 5, merge="mean")], 6, 3, tokens=True, lengths=[6, 3, 1], dstate=True),
    _case("bilayer_mul", "BiLayer sigmoid with sigmoid output, merge mul, no bias, lengths, h0, dstate",
          [_Bi(3, 4, 3, f="sigmoid", g="sigmoid", merge="mul", bias=False)], 6, 3,
          lengths=[6, 2, 4], h0=True, dstate=True),
    _case("stack2_layers", "Stack [Layer tanh, Layer relu with softmax output], lengths, h0, dstate",
          [_L(3, 6), _L(6, 5, 4, f="relu", g="softmax")], 7, 3, lengths=[7, 4, 1],
          h0=True, dstate=True),
    _case("stack2_reverse_bilayer", "Stack [Layer relu reverse, BiLayer mul with output projection], "
          "lengths with a zero, h0, dstate",
          [_L(4, 5, f="relu", reverse=True), _Bi(5, 4, 3, merge="mul")], 6, 4,
          lengths=[6, 0, 3, 5], h0=True, dstate=True),
    _case("stack3_tokens", "Stack [BiLayer concat, Layer sigmoid, Layer identity with tanh output], "
          "token input, lengths, h0, dstate",
          [_Bi(7, 4, merge="concat"), _L(8, 5, f="sigmoid"), _L(5, 4, 3, f="identity", g="tanh")],
          8, 3, tokens=True, lengths=[8, 5, 2], h0=True, dstate=True),
]


def _features(spec):
    mods = spec["modules"]
    out = []
    out.append("stack" if spec["stack"] else mods[0][0].lower())
    if any(kw["output_size"] is not None for _, kw in mods):
        out.append("projection")
    if any(not kw.get("bias", True) for _, kw in mods):
        out.append("no-bias")
    if any(kw.get("reverse") for _, kw in mods):
        out.append("reverse")
    out += sorted({"merge-" + kw["merge"] for t, kw in mods if t == "BiLayer"})
    if spec["tokens"]:
        out.append("tokens")
    if spec["lengths"] is not None:
        out.append("lengths")
        if 0 in spec["lengths"]:
            out.append("zero-length")
    for k in ("h0", "dstate"):
        if spec[k]:
            out.append(k)
    return out


def _build_spec(spec, dtype, seeds):
    mods = []
    for (kind, kw), s in zip(spec["modules"], seeds):
        cls = Layer if kind == "Layer" else BiLayer
        mods.append(cls(**kw, dtype=dtype, seed=int(s)))
    return Stack(mods) if spec["stack"] else mods[0]


# --------------------------------------------------------------------------
# states and names

def _join(a, b):
    return f"{a}.{b}" if a else b


def state_paths(module, prefix=""):
    """The paths of a module's state arrays, in state order: [""] for a Layer,
    ["fwd", "bwd"] for a BiLayer, ["0", "1.fwd", "1.bwd"] for Stack [Layer, BiLayer]."""
    if isinstance(module, Layer):
        return [prefix]
    if isinstance(module, BiLayer):
        return [_join(prefix, "fwd"), _join(prefix, "bwd")]
    return [p for i, m in enumerate(module.layers) for p in state_paths(m, _join(prefix, str(i)))]


def state_name(kind, path):
    """"h0" for a Layer's state, "h0/1.fwd" for a path."""
    return f"{kind}/{path}" if path else kind


def _unflatten(module, arrays):
    """A state structure for `module` from its arrays in state_paths order."""
    it = iter(arrays)

    def build(m):
        if isinstance(m, Layer):
            return next(it)
        if isinstance(m, BiLayer):
            return (next(it), next(it))
        return [build(sub) for sub in m.layers]
    return build(module)


def _state_arrays(module, kind, state):
    return {state_name(kind, p): a for p, a in zip(state_paths(module), flatten_state(state))}


def _out_names(module, tokens, with_grads):
    """The output tensors crnn computes for a case, in a stable order."""
    paths = state_paths(module)
    names = ["y"] + [state_name("state", p) for p in paths]
    if with_grads:
        names += [f"grad/{k}" for k in module.params]
        if not tokens:
            names.append("dx")
        names += [state_name("dh0", p) for p in paths]
    return names


# --------------------------------------------------------------------------
# computing a case

def _json_bytes(obj):
    return np.frombuffer(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode(), np.uint8)


def compute(module, x, h0=None, lengths=None, dy=None, dstate=None):
    """Run crnn: {name: array} of y, state/*, and (when dy is given) grad/*, dx, dh0/*."""
    y, state = module.forward(x, h0, lengths)
    out = {"y": np.array(y)}
    out.update({k: np.array(v) for k, v in _state_arrays(module, "state", state).items()})
    if dy is not None:
        module.zero_grad()
        dx, dh0 = module.backward(dy, dstate)
        out.update({f"grad/{k}": np.array(v) for k, v in module.grads.items()})
        if dx is not None:
            out["dx"] = np.array(dx)
        out.update({k: np.array(v) for k, v in _state_arrays(module, "dh0", dh0).items()})
    return out


def _reference(module, x, h0, lengths, dy, dstate):
    """The same tensors from crnn.reference (float64)."""
    cfg, params = module.config(), {k: np.array(v) for k, v in module.params.items()}
    y, state = reference.forward(cfg, params, x, h0, lengths)
    grads, dx, dh0 = reference.gradients(cfg, params, x, dy, h0, lengths, dstate)
    out = {"y": y, **_state_arrays(module, "state", state)}
    out.update({f"grad/{k}": v for k, v in grads.items()})
    if dx is not None:
        out["dx"] = dx
    out.update(_state_arrays(module, "dh0", dh0))
    return out


def make_case(spec, dtype, seed=0):
    """(case name, {entry: array}, max reference error) for one spec and dtype."""
    dt = np.dtype(dtype)
    name = f"{spec['name']}.{dt.name}"
    ss = np.random.SeedSequence([int(seed), zlib.crc32(spec["name"].encode())])
    module_seeds = ss.generate_state(len(spec["modules"]))
    rng = np.random.default_rng(ss.spawn(1)[0])
    module = _build_spec(spec, dt, module_seeds)
    T, B, D = spec["T"], spec["B"], module.input_size
    if spec["tokens"]:
        x = rng.integers(0, D, (T, B), dtype=np.int64)
    else:
        x = rng.standard_normal((T, B, D)).astype(dt)
    lengths = None if spec["lengths"] is None else np.array(spec["lengths"], np.int64)
    paths = state_paths(module)
    shapes = []
    for m in (module.layers if isinstance(module, Stack) else [module]):
        shapes += [(B, m.hidden_size)] * (2 if isinstance(m, BiLayer) else 1)
    h0 = _unflatten(module, [rng.standard_normal(s).astype(dt) for s in shapes]) if spec["h0"] else None
    dy = rng.standard_normal((T, B, module.out_features)).astype(dt)
    dstate = (_unflatten(module, [rng.standard_normal(s).astype(dt) for s in shapes])
              if spec["dstate"] else None)

    out = compute(module, x, h0, lengths, dy, dstate)
    ref = _reference(module, x, h0, lengths, dy, dstate)
    if set(out) != set(ref):  # pragma: no cover - both come from the same module
        raise GoldenError(f"case {name}: crnn and reference give different tensors")
    err = max(scaled_error(out[k], ref[k]) for k in out)
    if not err <= REF_TOL[dt.name]:
        raise GoldenError(f"case {name}: crnn differs from crnn.reference by {err:.3e} "
                          f"(> {REF_TOL[dt.name]:.0e}); refusing to write it")

    arrays = {"config": _json_bytes(module.config()),
              "meta": _json_bytes({"format": FORMAT, "format_version": FORMAT_VERSION,
                                   "crnn_version": crnn.__version__, "case": name,
                                   "description": spec["description"],
                                   "features": _features(spec), "seed": int(seed)}),
              "x": x, "dy": dy}
    if lengths is not None:
        arrays["lengths"] = lengths
    if h0 is not None:
        arrays.update(_state_arrays(module, "h0", h0))
    if dstate is not None:
        arrays.update(_state_arrays(module, "dstate", dstate))
    arrays.update({f"param/{k}": np.array(v) for k, v in module.params.items()})
    arrays.update(out)
    assert all(state_name("state", p) in arrays for p in paths)
    return name, arrays, err


# --------------------------------------------------------------------------
# writing

def _umask_mode():
    old = os.umask(0o022)
    os.umask(old)
    return 0o666 & ~old


def _atomic_write(path, data):
    """Write bytes to path via a temporary file in the same directory + os.replace."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def npz_bytes(arrays):
    """An uncompressed .npz (what np.savez writes) with entries sorted by name and
    a fixed zip date, so equal arrays give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            arr = np.asarray(arrays[name])
            if arr.dtype.hasobject:
                raise TypeError(f"{name}: object arrays are not allowed")
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=ZIP_DATE)
            info.create_system = 3
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def _manifest(seed, dtypes, entries):
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "crnn_version": crnn.__version__,
        "seed": int(seed),
        "dtypes": list(dtypes),
        "conventions": CONVENTIONS,
        "tolerances": TOLERANCES,
        "entries": {
            "config": "uint8, UTF-8 JSON of the module config",
            "meta": "uint8, UTF-8 JSON: format, format_version, crnn_version, case, description, "
                    "features, seed",
            "x": "(T, B, D) float, or (T, B) int64 token ids",
            "lengths": "(B,) int64; absent: all T",
            "h0/<path>": "(B, H) initial state; absent: zeros",
            "param/<name>": "parameter",
            "y": "(T, B, out_features) output",
            "state/<path>": "(B, H) final state",
            "dy": "(T, B, out_features) dL/dy",
            "dstate/<path>": "(B, H) dL/d(final state); absent: zeros",
            "grad/<name>": "dL/d(parameter)",
            "dx": "(T, B, D) dL/dx; absent for token input",
            "dh0/<path>": "(B, H) dL/dh0",
        },
        "cases": entries,
    }


def generate(out_dir, dtypes=DTYPES, seed=0, report=None):
    """Write every case in `dtypes` and manifest.json to out_dir; return the manifest."""
    dtypes = [np.dtype(d).name for d in dtypes]
    for d in dtypes:
        if d not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {d}")
    os.makedirs(out_dir, exist_ok=True)
    entries = {}
    for dt in dtypes:
        for spec in CASES:
            name, arrays, err = make_case(spec, dt, seed)
            data = npz_bytes(arrays)
            fname = name + ".npz"
            _atomic_write(os.path.join(out_dir, fname), data)
            entries[name] = {
                "file": fname,
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "description": spec["description"],
                "features": _features(spec),
                "dtype": dt,
                "config": json.loads(bytes(arrays["config"])),
                "reference_error": float(f"{err:.2e}"),
                "tensors": {k: {"dtype": np.asarray(v).dtype.name, "shape": list(np.shape(v))}
                            for k, v in sorted(arrays.items()) if k not in ("config", "meta")},
            }
            if report is not None:
                report(name, len(data), err)
    manifest = _manifest(seed, dtypes, entries)
    text = json.dumps(manifest, sort_keys=True, indent=1) + "\n"
    _atomic_write(os.path.join(out_dir, "manifest.json"), text.encode())
    return manifest


# --------------------------------------------------------------------------
# reading and checking

def load_case(path):
    """Every entry of a case file as {name: array}; GoldenError if unusable."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise GoldenError(f"{path}: not a readable .npz file (no zip signature; "
                          f"starts with {magic!r})")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):  # pragma: no cover - np.load on .npy
                raise GoldenError(f"{path}: not a .npz archive")
            return {k: z[k] for k in z.files}
    except GoldenError:
        raise
    except zipfile.BadZipFile as e:
        raise GoldenError(f"{path}: not a readable .npz (zip) file: {e}") from None
    except ValueError as e:
        msg = str(e)
        if "pickle" in msg.lower():
            msg = "holds an object (pickled) array, which is never loaded"
        raise GoldenError(f"{path}: cannot read: {msg}") from None
    except (OSError, EOFError) as e:
        if isinstance(e, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise GoldenError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None


def _parse_json_entry(arr, what, where):
    arr = np.asarray(arr)
    try:
        if arr.dtype == np.uint8 and arr.ndim == 1:
            text = arr.tobytes().decode("utf-8")
        elif arr.dtype.kind == "U" and arr.ndim == 0:
            text = str(arr)
        else:
            raise ValueError(f"must be a uint8 array (or 0-d str) of JSON, got {arr.dtype} {arr.shape}")
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise GoldenError(f"{where}: entry '{what}' is not valid JSON: {e}") from None


_LAYER_KEYS = {"type", "input_size", "hidden_size", "output_size", "activation",
               "output_activation", "reverse", "bias", "dtype"}
_BILAYER_KEYS = (_LAYER_KEYS - {"reverse"}) | {"merge"}


def module_from_config(cfg, where="config"):
    """A Layer / BiLayer / Stack with the shape described by `cfg` (parameters random)."""
    def one(c, w):
        if not isinstance(c, dict) or c.get("type") not in ("Layer", "BiLayer"):
            raise GoldenError(f"{w}: expected a Layer or BiLayer config, got {c!r:.200}")
        keys = _LAYER_KEYS if c["type"] == "Layer" else _BILAYER_KEYS
        if set(c) != keys:
            raise GoldenError(f"{w}: {c['type']} config keys must be {sorted(keys)}: missing "
                              f"{sorted(keys - set(c))}, unknown {sorted(set(c) - keys)}")
        kw = {k: v for k, v in c.items() if k != "type"}
        try:
            return (Layer if c["type"] == "Layer" else BiLayer)(**kw, seed=0)
        except (TypeError, ValueError) as e:
            raise GoldenError(f"{w}: {e}") from None

    if isinstance(cfg, dict) and cfg.get("type") == "Stack":
        if set(cfg) != {"type", "layers"} or not isinstance(cfg["layers"], list) or not cfg["layers"]:
            raise GoldenError(f"{where}: a Stack config is {{\"type\": \"Stack\", \"layers\": [...]}}")
        try:
            return Stack([one(c, f"{where} layer {i}") for i, c in enumerate(cfg["layers"])])
        except (TypeError, ValueError) as e:
            if isinstance(e, GoldenError):
                raise
            raise GoldenError(f"{where}: {e}") from None
    return one(cfg, where)


class _Case:
    """One case of PATH, completed from the golden file of the same name."""

    def __init__(self, name, path, golden_path=None, golden_sha=None):
        self.name, self.path = name, path
        self.given = load_case(path)
        self.golden = {}
        if golden_path is not None and os.path.exists(golden_path):
            if golden_sha is not None:
                with open(golden_path, "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() != golden_sha:
                        raise GoldenError(f"{golden_path}: does not match the SHA-256 in its "
                                          "manifest.json (modified or corrupted golden file)")
            self.golden = load_case(golden_path)

    def get(self, name):
        if name in self.given:
            return self.given[name]
        return self.golden.get(name)

    def has(self, name):
        return name in self.given or name in self.golden

    def state(self, module, kind):
        names = [state_name(kind, p) for p in state_paths(module)]
        present = [n for n in names if self.has(n)]
        if not present:
            return None
        if len(present) != len(names):
            raise GoldenError(f"{self.path}: {kind} is incomplete: has {present}, lacks "
                              f"{[n for n in names if n not in present]}")
        return _unflatten(module, [self.get(n) for n in names])

    def run(self):
        """(module, crnn's outputs, config dtype name, tokens)."""
        where = self.path
        if "meta" in self.given:
            meta = _parse_json_entry(self.given["meta"], "meta", where)
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise GoldenError(f"{where}: entry 'meta' is not crnn-golden metadata "
                                  f"(format {meta.get('format') if isinstance(meta, dict) else meta!r})")
            if meta.get("format_version") != FORMAT_VERSION:
                raise GoldenError(f"{where}: format_version {meta.get('format_version')!r} is not "
                                  f"{FORMAT_VERSION}")
        if not self.has("config"):
            raise GoldenError(f"{where}: not a crnn golden case: no 'config' entry"
                              + ("" if self.golden else " (and no --golden case to take it from)")
                              + f"; entries: {sorted(self.given)[:8]}")
        cfg = _parse_json_entry(self.get("config"), "config", where)
        module = module_from_config(cfg, f"{where}: config")
        for k in module.params:
            if not self.has(f"param/{k}"):
                raise GoldenError(f"{where}: lacks parameter param/{k}")
            v = np.asarray(self.get(f"param/{k}"))
            if v.shape != module.params[k].shape or v.dtype.kind not in "iuf":
                raise GoldenError(f"{where}: param/{k} has {v.dtype} {v.shape}, expected "
                                  f"{module.dtype.name} {module.params[k].shape}")
            module.params[k][...] = v
        if not self.has("x"):
            raise GoldenError(f"{where}: lacks the input x")
        x = self.get("x")
        tokens = np.asarray(x).ndim == 2
        dy = self.get("dy")
        try:
            out = compute(module, x, self.state(module, "h0"), self.get("lengths"),
                          dy, self.state(module, "dstate") if dy is not None else None)
        except (TypeError, ValueError) as e:
            if isinstance(e, GoldenError):
                raise
            raise GoldenError(f"{where}: crnn cannot run this case: {e}") from None
        return module, out, module.dtype.name, tokens


def compare(got, ref):
    """(max abs error, max abs error / max(1, max|ref|)) of got against ref (crnn's)."""
    a = np.asarray(got)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"dtype {a.dtype} is not numeric")
    if a.shape != ref.shape:
        raise ValueError(f"shape {a.shape}, expected {ref.shape}")
    if a.size == 0:
        return 0.0, 0.0
    a, r = a.astype(np.float64), ref.astype(np.float64)
    abs_err = float(np.max(np.abs(a - r)))
    if not np.isfinite(a).all():
        abs_err = float("nan")
    return abs_err, abs_err / max(1.0, float(np.max(np.abs(r))))


def _case_files(path):
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.endswith(".npz") and not f.startswith("."))
        return [(f[:-4], os.path.join(path, f)) for f in files]
    if os.path.exists(path):
        base = os.path.basename(path)
        return [(base[:-4] if base.endswith(".npz") else base, path)]
    raise FileNotFoundError(f"no such file or directory: {path}")


def _golden_shas(golden):
    if golden is None:
        return {}
    mpath = os.path.join(golden, "manifest.json")
    if not os.path.exists(mpath):
        return {}
    try:
        with open(mpath, encoding="utf-8") as f:
            m = json.load(f)
        return {c["file"]: c["sha256"] for c in m["cases"].values()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise GoldenError(f"{mpath}: not a crnn-golden manifest ({e})") from None


def check_against(path, golden=None, rtol=None, strict=False, quiet=False, out=None):
    """Compare the results in `path` with crnn; print the table; return the exit status."""
    out = out or sys.stdout
    tol = dict(RTOL)
    tol.update(rtol or {})
    if golden is not None and not os.path.isdir(golden):
        print(f"crnn check-against: --golden {golden}: not a directory", file=sys.stderr)
        return 2
    try:
        cases = _case_files(path)
        shas = _golden_shas(golden)
    except (FileNotFoundError, GoldenError) as e:
        print(f"crnn check-against: {e}", file=sys.stderr)
        return 2
    if not cases:
        print(f"crnn check-against: {path}: no .npz case files", file=sys.stderr)
        return 2
    print(f"crnn check-against {path}" + (f" (inputs completed from {golden})" if golden else ""),
          file=out)
    print("error = max|a - b| / max(1, max|ref|) per tensor, ref = crnn's result; tolerance "
          + ", ".join(f"{k} {v:.0e}" for k, v in sorted(tol.items())), file=out)
    header = f"{'case':34s} {'tensor':22s} {'max abs err':>11s} {'max rel err':>11s} {'tol':>7s}  result"
    print(header, file=out)
    print("-" * len(header), file=out)
    n = dict(ok=0, fail=0, missing=0, extra=0, error=0)
    bad = False
    flag = " (FAIL: --strict)" if strict else ""

    def row(case, tensor, result, a=None, r=None, t=None):
        if quiet and result == "ok":
            return
        num = (lambda v: f"{v:11.2e}") if a is not None else (lambda v: f"{'-':>11s}")
        tcol = f"{t:7.0e}" if t is not None else f"{'-':>7s}"
        print(f"{case:34s} {tensor:22s} {num(a)} {num(r)} {tcol}  {result}", file=out)

    for name, fpath in cases:
        gpath = None if golden is None else os.path.join(golden, os.path.basename(fpath))
        try:
            case = _Case(name, fpath, gpath, shas.get(os.path.basename(fpath)))
            module, ref, dt, tokens = case.run()
        except (GoldenError, OSError) as e:
            n["error"] += 1
            bad = True
            print(f"{name:34s} {'-':22s} ERROR: {e}", file=out)
            continue
        t = tol.get(dt, RTOL[dt])
        with_grads = case.has("dy")
        expected = _out_names(module, tokens, with_grads)
        unverifiable = [k for k in _out_names(module, tokens, True) if k not in expected]
        paths = state_paths(module)
        inputs = {"config", "meta", "x", "lengths", "dy"}
        inputs |= {f"param/{k}" for k in module.params}
        inputs |= {state_name(kind, p) for kind in ("h0", "dstate") for p in paths}
        for tensor in expected:
            if tensor not in case.given:
                n["missing"] += 1
                bad |= strict
                row(name, tensor, "missing" + flag)
                continue
            try:
                a, r = compare(case.given[tensor], ref[tensor])
            except (TypeError, ValueError) as e:
                n["fail"] += 1
                bad = True
                row(name, tensor, f"FAIL: {e}", t=t)
                continue
            ok = r <= t  # False for NaN
            n["ok" if ok else "fail"] += 1
            bad |= not ok
            row(name, tensor, "ok" if ok else "FAIL", a, r, t)
        if not with_grads:
            row(name, "(gradients)", "not checked: no dy in PATH" + ("" if golden else " (no --golden)"))
        for tensor in sorted(set(case.given) - set(expected) - inputs):
            if tensor in unverifiable:
                n["fail"] += 1
                bad = True
                row(name, tensor, "FAIL: cannot check, no dy (in PATH or --golden)")
                continue
            n["extra"] += 1
            bad |= strict
            why = "token input has no dx" if tensor == "dx" and tokens else "unknown name"
            row(name, tensor, f"extra ({why}){flag}")
    not_checked = []
    if golden is not None and os.path.isdir(path):
        have = {os.path.basename(p) for _, p in cases}
        not_checked = sorted(f[:-4] for f in os.listdir(golden)
                             if f.endswith(".npz") and not f.startswith(".") and f not in have)
        if not_checked:
            bad |= strict
            print(f"{len(not_checked)} golden case(s) not in {path}{flag}: "
                  + ", ".join(not_checked), file=out)
    print(f"{len(cases)} case(s): {n['ok']} tensors ok, {n['fail']} FAILED, {n['error']} case "
          f"error(s), {n['missing']} missing, {n['extra']} extra"
          + (f", {len(not_checked)} golden case(s) absent" if not_checked else "")
          + f" -> {'FAILED' if bad else 'passed'}", file=out)
    return 1 if bad else 0


# --------------------------------------------------------------------------
# the command line

def _parse_rtol(values):
    rt = {}
    for v in values or []:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if "=" in part:
                    k, val = part.split("=", 1)
                    k = k.strip()
                    if k not in DTYPES:
                        raise ValueError(f"unknown dtype {k!r}")
                    rt[k] = float(val)
                else:
                    rt = {d: float(part) for d in DTYPES}
            except ValueError as e:
                raise argparse.ArgumentTypeError(
                    f"--rtol {v!r}: expected a number or float64=R,float32=R ({e})") from None
            if any(not (w >= 0) for w in rt.values()):
                raise argparse.ArgumentTypeError(f"--rtol {v!r}: must be >= 0")
    return rt


def _cmd_golden(args):
    dtypes = DTYPES if args.dtype == "both" else (args.dtype,)
    t0 = time.perf_counter()
    total = 0

    def report(name, size, err):
        nonlocal total
        total += size
        print(f"  {name:40s} {size:7d} bytes   max reference error {err:.1e}")

    print(f"crnn golden: writing {len(CASES) * len(dtypes)} cases to {args.out} (seed {args.seed})")
    try:
        generate(args.out, dtypes, args.seed, report=report)
    except GoldenError as e:
        print(f"crnn golden: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(CASES) * len(dtypes)} cases and manifest.json ({total / 1024:.0f} KiB) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_check(args):
    try:
        rtol = _parse_rtol(args.rtol)
    except argparse.ArgumentTypeError as e:
        print(f"crnn check-against: {e}", file=sys.stderr)
        return 2
    return check_against(args.path, args.golden, rtol, args.strict, args.quiet)


def add_parser(sub):
    p = sub.add_parser("golden", help="write golden .npz files (inputs, parameters, outputs, "
                       "every gradient) for testing other frameworks against crnn",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write (created)")
    p.add_argument("--dtype", choices=("float64", "float32", "both"), default="both",
                   help="which dtypes to write (default both)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_golden)

    c = sub.add_parser("check-against", help="compare another framework's results (golden "
                       "format) with crnn", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("path", metavar="PATH", help="a directory of <case>.npz files, or one .npz")
    c.add_argument("--golden", metavar="DIR", help="golden directory to take inputs and "
                   "parameters from when PATH's files lack them")
    c.add_argument("--rtol", action="append", metavar="R",
                   help="tolerance on max|a-b|/max(1,max|ref|): a number for every dtype, or "
                   "float64=R,float32=R (default float64=1e-10,float32=1e-4)")
    c.add_argument("--strict", action="store_true", help="missing and extra tensors (and "
                   "missing cases) fail")
    c.add_argument("-q", "--quiet", action="store_true", help="print only rows that are not ok")
    c.set_defaults(func=_cmd_check)
