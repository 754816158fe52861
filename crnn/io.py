"""Save and load modules, optimizer state and checkpoints: .npz + JSON, never pickle.

    crnn.io.save(layer, "model.npz")
    layer = crnn.io.load("model.npz")

    crnn.io.save({"model": stack, "optimizer": opt, "meta": {"epoch": 3}}, "ckpt.npz")
    ck = crnn.io.load("ckpt.npz")   # {"model": Stack, "optimizer": Adam, "meta": {...}}

The file format ("crnn-npz", version 1)
---------------------------------------
One uncompressed .npz archive (``np.savez``) holding

- every array under its name: ``params/<name>`` for a module's parameters
  (``params/W_xh``, ``params/0.bwd.W_hh``) and ``optimizer/<name>`` for an
  optimizer's state arrays (``optimizer/exp_avg.0.W_hh``), in the parameters'
  dtype (float32 or float64), C order, native little-endian;
- ``__crnn__.json``: a uint8 array holding a UTF-8 JSON document::

      {"format": "crnn-npz", "format_version": 1, "crnn_version": "0.4.12",
       "kind": "module" | "optimizer" | "checkpoint",
       "model": <module.config()>,                           (module, checkpoint)
       "optimizer": {"config": <state_dict()["config"]>,     (optimizer, checkpoint)
                     "params": {<param>: {"shape": [...], "dtype": "float64"}}},
       "arrays": {<array name>: {"shape": [...], "dtype": "float64"}},
       "meta": {...}}                                        (anything JSON-able)

Nothing is pickled: writing uses ``allow_pickle=False`` and reading uses
``np.load(..., allow_pickle=False)``. Any NumPy can read the arrays back;
``json.loads(bytes(np.load(path)["__crnn__.json"]))`` gives the document.

Writing is atomic: the archive goes to a temporary file in the target's
directory, is flushed and fsync'ed, then renamed onto the target with
``os.replace``. If anything fails (or is interrupted) the temporary file is
removed and an existing file at the path is left as it was.

Loading validates everything before building anything: the JSON entry, the
format and version, the kind, the module config (types, sizes, activations,
the chaining of a Stack's layers), that the archive holds exactly the expected
arrays with exactly the expected shapes and dtypes. Every problem with the
file's content (not a zip, truncated, foreign .npz, edited JSON, wrong arrays)
is a ValueError whose message names the file and what is wrong; a file that
cannot be opened is the usual OSError. Round trips are exact: the loaded
parameters and optimizer state are bitwise the saved ones.
"""
import inspect
import json
import os
import tempfile
from collections.abc import Mapping

import numpy as np

from crnn import optim
from crnn.layers import BiLayer, HIDDEN_ACTIVATIONS, Layer, MERGES, OUTPUT_ACTIVATIONS, Stack

__all__ = ["save", "load", "from_config", "FORMAT", "FORMAT_VERSION"]

FORMAT = "crnn-npz"
FORMAT_VERSION = 1
JSON_ENTRY = "__crnn__.json"
KINDS = ("module", "optimizer", "checkpoint")
_DTYPES = ("float32", "float64")
_MODULES = (Layer, BiLayer, Stack)
# np.savez takes allow_pickle from NumPy 2.1 on; before, the keyword would become an array
_SAVEZ_KW = {"allow_pickle": False} if "allow_pickle" in inspect.signature(np.savez).parameters else {}


# --------------------------------------------------------------------------
# module configs

class ConfigError(ValueError):
    """An invalid module config (raised by from_config)."""


def _cfg_keys(cfg, where, required, optional=()):
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{where} must be a JSON object, got {type(cfg).__name__}")
    missing = [k for k in required if k not in cfg]
    unknown = [k for k in cfg if k not in required and k not in optional]
    if missing or unknown:
        raise ConfigError(f"{where}: missing keys {missing}, unknown keys {unknown}")


def _cfg_int(cfg, key, where, allow_none=False):
    v = cfg[key]
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{where}: {key} must be an int >= 1{' or null' if allow_none else ''}, got {v!r}")
    return v


def _cfg_choice(cfg, key, where, options):
    v = cfg[key]
    if not isinstance(v, str) or v not in options:
        raise ConfigError(f"{where}: {key} must be one of {list(options)}, got {v!r}")
    return v


def _cfg_bool(cfg, key, where):
    v = cfg[key]
    if not isinstance(v, bool):
        raise ConfigError(f"{where}: {key} must be true or false, got {v!r}")
    return v


_LAYER_KEYS = ("type", "input_size", "hidden_size", "output_size", "activation",
               "output_activation", "reverse", "bias", "dtype")
_BILAYER_KEYS = ("type", "input_size", "hidden_size", "output_size", "activation",
                 "output_activation", "merge", "bias", "dtype")


def _check_layer_config(cfg, where):
    """Validate a Layer/BiLayer config; return (kwargs for the constructor, layout, out_features).

    layout is {param name: (shape, dtype name)} in the module's params order.
    """
    kind = cfg.get("type") if isinstance(cfg, Mapping) else None
    _cfg_keys(cfg, where, _LAYER_KEYS if kind == "Layer" else _BILAYER_KEYS)
    D = _cfg_int(cfg, "input_size", where)
    H = _cfg_int(cfg, "hidden_size", where)
    O = _cfg_int(cfg, "output_size", where, allow_none=True)
    kw = dict(input_size=D, hidden_size=H, output_size=O,
              activation=_cfg_choice(cfg, "activation", where, HIDDEN_ACTIVATIONS),
              output_activation=_cfg_choice(cfg, "output_activation", where, OUTPUT_ACTIVATIONS),
              bias=_cfg_bool(cfg, "bias", where),
              dtype=_cfg_choice(cfg, "dtype", where, _DTYPES))
    if O is None and kw["output_activation"] != "identity":
        raise ConfigError(f"{where}: output_activation {kw['output_activation']!r} needs an output_size")
    one = {"W_xh": (H, D), "W_hh": (H, H)}
    if kw["bias"]:
        one["b_h"] = (H,)
    if O is not None:
        one["W_hy"] = (O, H)
        if kw["bias"]:
            one["b_y"] = (O,)
    F = O if O is not None else H
    if kind == "Layer":
        kw["reverse"] = _cfg_bool(cfg, "reverse", where)
        layout = {k: (s, kw["dtype"]) for k, s in one.items()}
        return kw, layout, F
    kw["merge"] = _cfg_choice(cfg, "merge", where, MERGES)
    layout = {f"{d}.{k}": (s, kw["dtype"]) for d in ("fwd", "bwd") for k, s in one.items()}
    return kw, layout, 2 * F if kw["merge"] == "concat" else F


def _check_config(cfg, where="config"):
    """Validate a module config without building anything.

    Returns (layout, builder): layout {param name: (shape tuple, dtype name)},
    builder() constructs the module (randomly initialised).
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{where} must be a JSON object, got {type(cfg).__name__}")
    kind = cfg.get("type")
    if kind in ("Layer", "BiLayer"):
        kw, layout, _ = _check_layer_config(cfg, f"{where} ({kind})")
        cls = Layer if kind == "Layer" else BiLayer
        return layout, lambda: cls(**kw, seed=0)
    if kind == "Stack":
        _cfg_keys(cfg, f"{where} (Stack)", ("type", "layers"))
        layers = cfg["layers"]
        if not isinstance(layers, list) or not layers:
            raise ConfigError(f"{where} (Stack): layers must be a non-empty list, got {layers!r}")
        layout, kws, prev = {}, [], None
        for i, sub in enumerate(layers):
            w = f"{where} (Stack) layer {i}"
            sub_kind = sub.get("type") if isinstance(sub, Mapping) else None
            if sub_kind not in ("Layer", "BiLayer"):
                raise ConfigError(f"{w}: type must be 'Layer' or 'BiLayer', got {sub_kind!r}")
            kw, sub_layout, out = _check_layer_config(sub, f"{w} ({sub_kind})")
            if prev is not None:
                if kw["input_size"] != prev[0]:
                    raise ConfigError(f"{w}: input_size {kw['input_size']} does not match the "
                                      f"previous layer's out_features {prev[0]}")
                if kw["dtype"] != prev[1]:
                    raise ConfigError(f"{w}: dtype {kw['dtype']} differs from the previous layer's {prev[1]}")
            prev = (out, kw["dtype"])
            layout.update({f"{i}.{k}": v for k, v in sub_layout.items()})
            kws.append((Layer if sub_kind == "Layer" else BiLayer, kw))
        return layout, lambda: Stack([cls(**kw, seed=0) for cls, kw in kws])
    raise ConfigError(f"{where}: type must be 'Layer', 'BiLayer' or 'Stack', got {kind!r}")


def from_config(config):
    """Build a module (Layer, BiLayer or Stack) from ``module.config()``.

    The parameters are freshly initialised (seed 0); ``load`` then overwrites
    them. Raises ValueError for an invalid config (unknown or missing keys,
    wrong types, sizes < 1, unknown activation or merge, a Stack whose layers do
    not chain or mix dtypes).
    """
    _, build = _check_config(config)
    try:
        return build()
    except (TypeError, ValueError) as e:  # pragma: no cover - _check_config catches these first
        raise ConfigError(f"config: {e}") from e


def _layout_of(module):
    return {k: (tuple(v.shape), v.dtype.name) for k, v in module.params.items()}


# --------------------------------------------------------------------------
# save

def _json_safe(value, what):
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON-able (dicts, lists, str, int, finite float, bool, "
                        f"None): {e}") from e


def _spec(a):
    return {"shape": list(a.shape), "dtype": a.dtype.name}


def _collect(obj):
    """(document without 'arrays', {array name: ndarray}) for what save() accepts."""
    if isinstance(obj, _MODULES):
        return {"kind": "module", "model": obj.config()}, \
            {f"params/{k}": v for k, v in obj.params.items()}
    if isinstance(obj, optim.Optimizer):
        sd = obj.state_dict()
        doc = {"kind": "optimizer",
               "optimizer": {"config": sd["config"],
                             "params": {k: _spec(v) for k, v in obj.module.params.items()}}}
        return doc, {f"optimizer/{k}": v for k, v in sd["arrays"].items()}
    if isinstance(obj, Mapping):
        unknown = set(obj) - {"model", "optimizer", "meta"}
        if "model" not in obj or unknown:
            raise TypeError("a checkpoint must be a dict with the key 'model' and optionally "
                            f"'optimizer' and 'meta', got keys {sorted(map(str, obj))}")
        model, opt, meta = obj["model"], obj.get("optimizer"), obj.get("meta")
        if not isinstance(model, _MODULES):
            raise TypeError(f"checkpoint['model'] must be a Layer, BiLayer or Stack, got {type(model).__name__}")
        doc = {"kind": "checkpoint", "model": model.config()}
        arrays = {f"params/{k}": v for k, v in model.params.items()}
        if opt is not None:
            if not isinstance(opt, optim.Optimizer):
                raise TypeError(f"checkpoint['optimizer'] must be a crnn.optim optimizer or None, "
                                f"got {type(opt).__name__}")
            if opt.module is not model and _layout_of(opt.module) != _layout_of(model):
                raise ValueError("checkpoint['optimizer'] optimizes a module whose parameters differ "
                                 "from checkpoint['model']'s")
            sd = opt.state_dict()
            doc["optimizer"] = {"config": sd["config"],
                                "params": {k: _spec(v) for k, v in model.params.items()}}
            arrays.update({f"optimizer/{k}": v for k, v in sd["arrays"].items()})
        if meta is not None:
            if not isinstance(meta, Mapping):
                raise TypeError(f"checkpoint['meta'] must be a dict, got {type(meta).__name__}")
            doc["meta"] = dict(meta)
        return doc, arrays
    raise TypeError("save() takes a Layer, BiLayer, Stack, a crnn.optim optimizer, or a checkpoint "
                    f"dict {{'model', 'optimizer', 'meta'}}, got {type(obj).__name__}")


def _umask():
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)   # elsewhere: set and restore (briefly process-wide)
    os.umask(umask)
    return umask


def _new_file_mode(path):
    """The mode the saved file gets: the old file's, else what open() would give (0o666 - umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def save(obj, path):
    """Write ``obj`` to ``path`` atomically (see the module docstring for the format).

    obj: a Layer, BiLayer or Stack; an optimizer from crnn.optim (its
    state_dict, with the layout of the parameters it optimizes); or a
    checkpoint dict ``{"model": module, "optimizer": opt or None, "meta": dict}``
    ("optimizer" and "meta" optional; meta must be JSON-able).
    path: str or os.PathLike, used exactly as given (no ".npz" is appended).
    Returns the path as a str.
    """
    path = os.fspath(path)
    doc, arrays = _collect(obj)
    import crnn  # at call time: crnn/__init__ may import this module
    full = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "crnn_version": str(getattr(crnn, "__version__", "unknown"))}
    full.update(doc)
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype.name not in _DTYPES:
            raise TypeError(f"array {name!r} must be a float32 or float64 ndarray")
    full["arrays"] = {k: _spec(v) for k, v in arrays.items()}
    full.setdefault("meta", {})
    text = _json_safe(full, "the checkpoint (meta)")
    entries = {k: np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<")) for k, v in arrays.items()}
    entries[JSON_ENTRY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()

    directory = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    tmp = tempfile.NamedTemporaryFile(dir=directory, prefix="." + os.path.basename(path) + ".",
                                      suffix=".tmp", delete=False)
    try:
        with tmp:
            np.savez(tmp, **_SAVEZ_KW, **entries)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, mode)
        os.replace(tmp.name, path)
    except BaseException:
        try:
            os.unlink(tmp.name)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not possible everywhere
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


# --------------------------------------------------------------------------
# load

class _Bad(ValueError):
    pass


def _header(z, name):
    """(shape, dtype) from the .npy header of entry `name`, read without loading its data."""
    with z.zip.open(name + ".npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    return shape, dtype


def _entry(z, name, shape=None, dtype=None):
    """Entry `name` as an array; with shape/dtype, checked from its header before reading the data."""
    try:
        if shape is not None:
            got_shape, got_dtype = _header(z, name)
            if got_shape != shape or got_dtype != np.dtype(dtype).newbyteorder("<"):
                raise _Bad(f"array {name!r} has shape {got_shape} and dtype {got_dtype.str}, "
                           f"expected shape {shape} and dtype {dtype}")
        a = z[name]
    except _Bad:
        raise
    except Exception as e:
        raise _Bad(f"cannot read entry {name!r} ({type(e).__name__}: {e}); "
                   "the file is truncated or corrupt") from e
    if shape is not None and (a.shape != shape or a.dtype != np.dtype(dtype).newbyteorder("<")):
        raise _Bad(f"array {name!r} has shape {a.shape} and dtype {a.dtype.str}, "
                   f"expected shape {shape} and dtype {dtype}")
    return a


_MAX_JSON_BYTES = 1 << 26


def _read_archive(path):
    """(document, {array name: ndarray}) of a crnn .npz file, all checked; or raise _Bad."""
    with open(path, "rb") as f:   # OSError (missing file, permissions) passes through
        try:
            z = np.load(f, allow_pickle=False)
        except Exception as e:
            raise _Bad(f"not a readable .npz archive ({type(e).__name__}: {e})") from e
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise _Bad("not an .npz archive (it holds a single .npy array)")
        with z:
            names = list(z.files)
            if len(set(names)) != len(names):
                raise _Bad("the archive holds duplicate entries")
            if JSON_ENTRY not in names:
                raise _Bad(f"not a crnn file: the archive has no {JSON_ENTRY!r} entry "
                           f"(its entries: {sorted(names)[:10]})")
            try:
                shape, dtype = _header(z, JSON_ENTRY)
            except Exception as e:
                raise _Bad(f"cannot read entry {JSON_ENTRY!r} ({type(e).__name__}: {e}); "
                           "the file is truncated or corrupt") from e
            if dtype != np.uint8 or len(shape) != 1 or shape[0] > _MAX_JSON_BYTES:
                raise _Bad(f"{JSON_ENTRY!r} must be a 1-D uint8 array of at most {_MAX_JSON_BYTES} "
                           f"bytes, got dtype {dtype}, shape {shape}")
            doc = _parse_json(_entry(z, JSON_ENTRY))
            expected = _expected_arrays(doc)
            present = set(names) - {JSON_ENTRY}
            missing, extra = sorted(set(expected) - present), sorted(present - set(expected))
            if missing or extra:
                raise _Bad(f"the arrays do not match the config: missing {missing}, unexpected {extra}")
            arrays = {name: _entry(z, name, shape, dtype) for name, (shape, dtype) in expected.items()}
    return doc, arrays


def _parse_json(a):
    if a.dtype != np.uint8 or a.ndim != 1:
        raise _Bad(f"{JSON_ENTRY!r} must be a 1-D uint8 array, got dtype {a.dtype}, shape {a.shape}")
    try:
        doc = json.loads(a.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _Bad(f"{JSON_ENTRY!r} is not valid UTF-8 JSON ({type(e).__name__}: {e})") from e
    if not isinstance(doc, dict):
        raise _Bad(f"{JSON_ENTRY!r} must hold a JSON object, got {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise _Bad(f"unknown format {doc.get('format')!r} (expected {FORMAT!r})")
    v = doc.get("format_version")
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"format_version must be an int, got {v!r}")
    if v != FORMAT_VERSION:
        raise _Bad(f"format version {v} is not supported (this crnn reads version {FORMAT_VERSION}; "
                   "a newer crnn wrote it?)" if v > FORMAT_VERSION else
                   f"format version {v} is not supported (this crnn reads version {FORMAT_VERSION})")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise _Bad(f"unknown kind {kind!r} (expected one of {list(KINDS)})")
    parts = {"module": {"model"}, "optimizer": {"optimizer"}, "checkpoint": {"model"}}[kind]
    required = {"format", "format_version", "crnn_version", "kind", "arrays", "meta"} | parts
    allowed = required | ({"optimizer"} if kind == "checkpoint" else set())
    missing, unknown = sorted(required - set(doc)), sorted(set(doc) - allowed)
    if missing or unknown:
        raise _Bad(f"JSON document of kind {kind!r}: missing keys {missing}, unknown keys {unknown}")
    if not isinstance(doc["crnn_version"], str):
        raise _Bad(f"crnn_version must be a string, got {doc['crnn_version']!r}")
    if not isinstance(doc["meta"], dict):
        raise _Bad(f"meta must be a JSON object, got {type(doc['meta']).__name__}")
    return doc


def _shape_dtype(spec, where):
    if not isinstance(spec, dict) or set(spec) != {"shape", "dtype"}:
        raise _Bad(f"{where} must be an object {{'shape', 'dtype'}}, got {spec!r}")
    shape, dtype = spec["shape"], spec["dtype"]
    if (not isinstance(shape, list)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise _Bad(f"{where}: shape must be a list of ints >= 0, got {shape!r}")
    if dtype not in _DTYPES:
        raise _Bad(f"{where}: dtype must be one of {list(_DTYPES)}, got {dtype!r}")
    return tuple(shape), dtype


_BUFFER_NAMES = ("momentum_buffer", "sum", "square_avg", "grad_avg", "exp_avg", "exp_avg_sq",
                 "max_exp_avg_sq")


def _expected_arrays(doc):
    """{array name: (shape, dtype)} that the document's config implies; raise _Bad if invalid."""
    expected = {}
    if "model" in doc:
        try:
            layout, _ = _check_config(doc["model"], "model config")
        except ConfigError as e:
            raise _Bad(str(e)) from e
        expected.update({f"params/{k}": v for k, v in layout.items()})
        doc["_layout"] = layout
    if "optimizer" in doc:
        o = doc["optimizer"]
        if not isinstance(o, dict) or set(o) != {"config", "params"}:
            raise _Bad("the optimizer entry must be an object {'config', 'params'}")
        if not isinstance(o["config"], dict):
            raise _Bad("the optimizer config must be a JSON object")
        if not isinstance(o["params"], dict) or not o["params"]:
            raise _Bad("the optimizer's parameter layout must be a non-empty object")
        params = {k: _shape_dtype(v, f"optimizer parameter {k!r}") for k, v in o["params"].items()}
        if "model" in doc and params != doc["_layout"]:
            raise _Bad("the optimizer's parameter layout does not match the model's parameters")
        doc["_opt_layout"] = params
        # the optimizer's state arrays: "<buffer>.<param>", each of its parameter's shape and dtype
        listed = doc["arrays"] if isinstance(doc["arrays"], dict) else {}
        for name in listed:
            if not isinstance(name, str) or not name.startswith("optimizer/"):
                continue
            buf, _, param = name[len("optimizer/"):].partition(".")
            if buf not in _BUFFER_NAMES or param not in params:
                raise _Bad(f"unexpected optimizer array {name!r}")
            expected[name] = params[param]
    listed = doc["arrays"]
    if not isinstance(listed, dict):
        raise _Bad("'arrays' must be a JSON object")
    specs = {k: _shape_dtype(v, f"array {k!r}") for k, v in listed.items()}
    if specs != expected:
        raise _Bad("the JSON 'arrays' listing does not match the config: "
                   f"listed {sorted(specs)} vs implied {sorted(expected)}"
                   if set(specs) != set(expected) else
                   "the JSON 'arrays' listing gives shapes or dtypes that do not match the config")
    return expected


def _fake_module(layout):
    """An object with params/grads of the given layout, using no memory (for validating optimizer state)."""
    class _Fake:
        pass
    m = _Fake()
    m.params = {k: np.broadcast_to(np.zeros((), dtype=d), s) for k, (s, d) in layout.items()}
    m.grads = dict(m.params)
    return m


def _optimizer_state(doc, arrays):
    return {"config": doc["optimizer"]["config"],
            "arrays": {k[len("optimizer/"):]: v for k, v in arrays.items() if k.startswith("optimizer/")}}


def _build_optimizer(module, sd):
    try:
        return optim.optimizer_from_state(module, sd)
    except (TypeError, ValueError, KeyError, MemoryError) as e:
        raise _Bad(f"invalid optimizer state ({e})") from e


def _restore_into(module, doc, arrays):
    """Copy the saved parameters into an existing module whose config must equal the saved one."""
    if not isinstance(module, _MODULES):
        raise TypeError(f"module must be a Layer, BiLayer or Stack, got {type(module).__name__}")
    if module.config() != doc["model"]:
        raise _Bad(f"the saved model config {doc['model']} differs from the given module's "
                   f"{module.config()}")
    for k, v in arrays.items():
        if k.startswith("params/"):
            module.params[k[len("params/"):]][...] = v


def load(path, module=None):
    """Read what ``save`` wrote, after validating all of it.

    Returns, by the kind of file:
      module      the Layer, BiLayer or Stack, rebuilt from its config with the
                  saved parameters;
      optimizer   the state dict {"config", "arrays"} (for ``opt.load_state_dict``
                  or ``crnn.optim.optimizer_from_state``), or, when ``module`` is
                  given, the optimizer rebuilt for that module;
      checkpoint  {"model": module, "optimizer": optimizer or None, "meta": dict}
                  with the optimizer rebuilt on the loaded model.

    module: for a module or checkpoint file, restore the parameters into this
    existing module (its config() must equal the saved one) instead of building
    a new one; for an optimizer file, the module to rebuild the optimizer for.

    Raises ValueError naming the file and the problem for anything wrong with
    its content; OSError if it cannot be read.
    """
    path = os.fspath(path)
    try:
        doc, arrays = _read_archive(path)
        kind = doc["kind"]
        sd = None
        if "optimizer" in doc:
            sd = _optimizer_state(doc, arrays)
            # validate everything (config values, the buffers these hyper-parameters
            # need) before any module is touched
            _build_optimizer(_fake_module(doc["_opt_layout"]), sd)
        if kind == "optimizer":
            return sd if module is None else _build_optimizer(module, sd)
        if module is None:
            module = from_config(doc["model"])
            if _layout_of(module) != doc["_layout"]:  # pragma: no cover - layers.py and io.py disagree
                raise _Bad("internal error: the rebuilt module's parameters do not match its config")
        _restore_into(module, doc, arrays)
        if kind == "module":
            return module
        opt = None if sd is None else _build_optimizer(module, sd)
        return {"model": module, "optimizer": opt, "meta": doc["meta"]}
    except _Bad as e:
        raise ValueError(f"cannot load {path!r}: {e}") from e.__cause__
