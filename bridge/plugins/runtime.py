"""wasmtime, set up once: the engine (fuel + epochs), its epoch clock, the compiled-module cache,
and a plugin instance with the fast call path.

Calls into a plugin go through the C API's unchecked call (`wasmtime_func_call_unchecked`):
wasmtime-py's `Func.__call__` re-reads the function's type and converts every value on every
call, about five times the cost of the call itself. That is only safe when the export's type
is what we pass, so `Instance` checks every export's signature against abi.EXPORTS at load.

A .cwasm is native code. The cache only loads files it wrote itself, for the module they were
compiled from: each carries an HMAC-SHA256, under a key that lives 0600 in the cache directory
(0700), over the module's digest, the wasmtime version, the engine settings and the native code.
Plugin B's entry copied over plugin A's does not verify as A's, so A is compiled again from its
verified .wasm instead of running B's code under A's signature and permissions.

A cache that cannot be written (a full or read-only disk) costs only time: each file is written
under a temporary name and renamed into place, a failed write removes its temporary file (no
partial `.tmp` is left behind), the first failure is said once as a warning naming the directory,
and plugins are compiled from their .wasm each start until it can be written again.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable

import wasmtime
from wasmtime import _bindings, _ffi as ffi

from bridge.plugins import abi
from bridge.plugins.files import read_bounded

log = logging.getLogger(__name__)

EPOCH_TICK = 0.01  # seconds per epoch: the resolution of time_per_call_ms
ENGINE_SETTINGS = "fuel+epoch;cranelift-speed"
_KEY_FILE = "cache.key"
MAX_CACHE_BYTES = 256 << 20  # a compiled module is a few times its .wasm (at most 16 MiB)


class DeliveryTooLarge(ValueError):
    """A delivery over abi.MAX_BUFFER: the sender's doing, never counted as the plugin's crash."""


class PluginTrap(Exception):
    """A call into a plugin ended abnormally (trap, out of fuel, deadline); str() says which."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind  # "trap", "out_of_fuel", "timeout"


class Runtime:
    """One engine for every plugin, its epoch clock, and the compile cache."""

    def __init__(self, cache_dir: str | os.PathLike | None) -> None:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)
        self.version = wasmtime.__version__ if hasattr(wasmtime, "__version__") else _wasmtime_version()
        self.cache = ModuleCache(Path(cache_dir), self) if cache_dir else None
        self._stop = threading.Event()
        self._clock: threading.Thread | None = None

    def tick(self, stop: threading.Event) -> None:
        """The epoch clock, until `stop`: while it runs, a call past its deadline is interrupted.
        The plugin host runs it as a supervised thread."""
        while not stop.wait(EPOCH_TICK):
            self.engine.increment_epoch()

    def start_clock(self) -> None:
        """The clock on a thread of its own (for tools and benchmarks outside a bridge)."""
        self._clock = threading.Thread(target=self.tick, args=(self._stop,), name="wasm-epoch", daemon=True)
        self._clock.start()

    def stop_clock(self) -> None:
        self._stop.set()
        if self._clock is not None:
            self._clock.join(1.0)

    def compile(self, module: bytes, module_digest: str) -> tuple[wasmtime.Module, str]:
        """The compiled module, and where it came from ("cache" or "compiled in N ms")."""
        if self.cache is not None:
            cached = self.cache.load(module_digest)
            if cached is not None:
                return cached, "cache"
        began = time.perf_counter()
        compiled = wasmtime.Module(self.engine, module)
        took = (time.perf_counter() - began) * 1000
        if self.cache is not None:
            self.cache.store(module_digest, compiled)
        return compiled, f"compiled in {took:.0f} ms"


def _wasmtime_version() -> str:
    from importlib.metadata import version
    return version("wasmtime")


class ModuleCache:
    def __init__(self, directory: Path, runtime: Runtime) -> None:
        self.dir, self.runtime = directory, runtime
        self._key: bytes | None = None
        self.problem: str | None = None  # why entries are not being written now (said once)
        self.unwritten = 0  # entries that could not be written

    def _ready(self) -> bytes:
        if self._key is None:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.dir, 0o700)
            key_path = self.dir / _KEY_FILE
            try:
                key = bytes.fromhex(key_path.read_text().strip())
                if len(key) != 32:
                    raise ValueError("not a key")
            except (OSError, ValueError):
                key = secrets.token_bytes(32)
                _write_whole(key_path, key.hex().encode())
            self._key = key
        return self._key

    def _path(self, module_digest: str) -> Path:
        tag = hashlib.sha256(f"{self.runtime.version};{ENGINE_SETTINGS}".encode()).hexdigest()[:16]
        return self.dir / f"{module_digest[7:]}-{tag}.cwasm"

    def _tag(self, key: bytes, module_digest: str, body: bytes) -> bytes:
        """What binds an entry to its module: digest, wasmtime version, engine settings, code."""
        bound = hmac.new(key, f"{module_digest};{self.runtime.version};{ENGINE_SETTINGS};".encode(), "sha256")
        bound.update(body)
        return bound.digest()

    def load(self, module_digest: str) -> wasmtime.Module | None:
        path = self._path(module_digest)
        try:
            key = self._ready()
            data = read_bounded(path, MAX_CACHE_BYTES)
        except OSError:
            return None
        body, mac = data[:-32], data[-32:]
        if len(data) < 32 or not hmac.compare_digest(mac, self._tag(key, module_digest, body)):
            log.warning("plugins: ignoring %s: not a cache file this bridge wrote", path)
            return None
        try:
            return wasmtime.Module.deserialize(self.runtime.engine, body)
        except wasmtime.WasmtimeError:
            return None

    def store(self, module_digest: str, module: wasmtime.Module) -> None:
        try:
            key = self._ready()
            body = bytes(module.serialize())
            _write_whole(self._path(module_digest), body + self._tag(key, module_digest, body))
        except OSError as exc:
            self.unwritten += 1
            if self.problem is None:
                self.problem = (f"{self.dir}: cannot write the plugins' compile cache: {exc.strerror or exc}; "
                                "plugins are compiled at each start until it can be written (make it writable "
                                "and not full, or set plugins.cache_dir)")
                log.warning("plugins: %s", self.problem)
            return
        self.problem = None

    def health(self) -> dict[str, Any]:
        return {"path": str(self.dir), "problem": self.problem, "unwritten": self.unwritten}


def _write_whole(path: Path, data: bytes) -> None:
    """data as `path`, whole or not at all: written under a temporary name (0600), then renamed over
    it; a failure removes the temporary file (a full disk leaves nothing half-written behind)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class RawExport:
    """An i32-only export, called without wasmtime-py's per-call type checks (signature checked at load).

    The arguments go straight into the raw value buffer through an int32 view of it (a value is 16
    bytes; its i32 is the first 4), so a call builds no Python objects but the result.
    """

    __slots__ = ("_ctx", "_func", "_buf", "_ints", "_trap", "_trap_ref", "_n", "_stride")

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func, params: int, results: int) -> None:
        self._ctx = store._context()
        self._func = ctypes.byref(func._func)
        self._n = max(params, results, 1)
        self._buf = (ffi.wasmtime_val_raw_t * self._n)()
        self._stride = ctypes.sizeof(ffi.wasmtime_val_raw_t) // 4
        self._ints = (ctypes.c_int32 * (self._n * self._stride)).from_buffer(self._buf)
        self._new_trap()

    def _new_trap(self) -> None:
        self._trap = ctypes.POINTER(ffi.wasm_trap_t)()
        self._trap_ref = ctypes.byref(self._trap)

    def __call__(self, *args: int) -> int:
        ints, stride = self._ints, self._stride
        for i, value in enumerate(args):
            ints[i * stride] = value
        error = _call_unchecked(self._ctx, self._func, self._buf, self._n, self._trap_ref)
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        if self._trap:
            trap = wasmtime.Trap._from_ptr(self._trap)
            self._new_trap()
            raise trap
        return ints[0]


HostFunction = Callable[..., int]
# The call into the plugin releases the GIL (ctypes.CDLL): it may run until its deadline, the epoch
# clock that ends it is a Python thread, and the other threads must go on meanwhile. Every other C
# call on the delivery path returns at once and calls nothing back, so it is made through a handle
# of our own that keeps the GIL (ctypes.PyDLL, PYFUNCTYPE): each release while another thread wants
# the GIL hands it over (a wake-up and a context switch each way), and a delivery released it seven
# times, where now it releases it once. Our own handle also leaves wasmtime-py's copies as they are.
_call_unchecked = _bindings._wasmtime_func_call_unchecked
_held = ctypes.PyDLL(_bindings.dll._name)
_Context, _MemoryRef = ctypes.POINTER(ffi.wasmtime_context_t), ctypes.POINTER(ffi.wasmtime_memory_t)


def _c(name: str, restype: Any, *argtypes: Any) -> Any:
    fn = getattr(_held, name)
    fn.restype, fn.argtypes = restype, list(argtypes)
    return fn


_set_fuel = _c("wasmtime_context_set_fuel", ctypes.POINTER(ffi.wasmtime_error_t), _Context, ctypes.c_uint64)
_get_fuel = _c("wasmtime_context_get_fuel", ctypes.POINTER(ffi.wasmtime_error_t), _Context,
               ctypes.POINTER(ctypes.c_uint64))
_set_deadline = _c("wasmtime_context_set_epoch_deadline", None, _Context, ctypes.c_uint64)
_memory_data = _c("wasmtime_memory_data", ctypes.c_void_p, _Context, _MemoryRef)
_memory_size = _c("wasmtime_memory_data_size", ctypes.c_size_t, _Context, _MemoryRef)
_memmove = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)(
    ctypes._memmove_addr)  # type: ignore[attr-defined]


class Instance:
    """One instantiated plugin: its store (fuel, deadline, limits), memory and exports.

    `imports` maps each host import the module uses to a Python function of the i32 arguments
    that returns an i32; the module may import nothing else.
    """

    def __init__(self, runtime: Runtime, module: wasmtime.Module, imports: dict[str, HostFunction], *,
                 memory_bytes: int, table_elements: int, fuel: int, time_ms: int) -> None:
        self.runtime, self.fuel = runtime, fuel
        self.deadline = max(1, -(-time_ms // int(EPOCH_TICK * 1000)))
        self.store = wasmtime.Store(runtime.engine)
        self._ctx = self.store._context()
        self._fuel_left = ctypes.c_uint64()
        self._fuel_left_ref = ctypes.byref(self._fuel_left)
        self.store.set_limits(memory_size=memory_bytes, table_elements=table_elements, instances=1,
                              tables=1, memories=1)
        linker = wasmtime.Linker(runtime.engine)
        i32 = wasmtime.ValType.i32()
        for name, fn in imports.items():
            linker.define_func(abi.IMPORT_MODULE, name, wasmtime.FuncType([i32] * abi.IMPORTS[name], [i32]),
                               _host(fn))
        self._arm()
        instance = linker.instantiate(self.store, module)  # a start function runs here, under the limits
        exports = instance.exports(self.store)
        present = set(exports)
        memory = exports["memory"] if "memory" in present else None
        if not isinstance(memory, wasmtime.Memory):
            raise ValueError("the module exports no memory")
        self.memory = memory
        self._mem = ctypes.byref(memory._memory)
        self._buffer_ptr = self._buffer_cap = 0
        self.calls: dict[str, RawExport] = {}
        for name, (params, results) in {**abi.EXPORTS, **abi.OPTIONAL_EXPORTS}.items():
            func = exports[name] if name in present else None
            if isinstance(func, wasmtime.Func):  # check_module made sure each is a function
                self.calls[name] = RawExport(self.store, func, params, results)
        if "_initialize" in self.calls:
            self.call("_initialize")

    def _arm(self) -> None:
        """Fuel and deadline for the next call (the C API directly: this runs several times per event)."""
        error = _set_fuel(self._ctx, self.fuel)
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        _set_deadline(self._ctx, self.deadline)

    def _base(self) -> tuple[int, int]:
        """Where the plugin's memory is now, and its size (it moves when memory grows)."""
        return _memory_data(self._ctx, self._mem) or 0, _memory_size(self._ctx, self._mem)

    def call(self, name: str, *args: int) -> int:
        """Call an export, re-arming fuel and the deadline first; PluginTrap if it does not return."""
        self._arm()
        try:
            return self.calls[name](*args)
        except wasmtime.Trap as trap:
            raise as_plugin_trap(trap) from None
        except wasmtime.WasmtimeError as exc:
            raise PluginTrap(f"{name}: {str(exc).splitlines()[0]}", "trap") from None

    def fuel_used(self) -> int:
        """Fuel the last call burnt (read through the C API: this runs once per event)."""
        error = _get_fuel(self._ctx, self._fuel_left_ref)
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        return self.fuel - self._fuel_left.value

    # ------------------------------------------------------------ memory (bounds-checked)

    def holds(self, ptr: int, length: int) -> bool:
        """Whether ptr..ptr+length is inside the plugin's memory and within the 64 KiB cap."""
        return 0 <= length <= abi.MAX_BUFFER and ptr >= 0 and ptr + length <= _memory_size(self._ctx, self._mem)

    def read(self, ptr: int, length: int) -> bytes | None:
        """The plugin's bytes at ptr..ptr+length, or None when that is not inside its memory."""
        if not self.holds(ptr, length):
            return None
        return ctypes.string_at(_memory_data(self._ctx, self._mem) + ptr, length)

    def write(self, ptr: int, data: bytes) -> bool:
        base, size = self._base()
        if ptr <= 0 or len(data) > abi.MAX_BUFFER or ptr + len(data) > size:
            return False
        _memmove(base + ptr, data, len(data))
        return True

    def call_with(self, name: str, *buffers: bytes) -> int:
        """Call export `name` with each buffer in plugin memory as a (ptr, len) pair.

        The buffers go into the instance's delivery buffer: allocated with the plugin's `alloc`
        once (and again, larger, when a delivery does not fit), kept across calls and given back
        with `dealloc` when the instance goes. So an event costs one call into the plugin, not three.
        """
        total = 0
        for data in buffers:
            if len(data) > abi.MAX_BUFFER:
                raise DeliveryTooLarge(f"{name}: a buffer over {abi.MAX_BUFFER >> 10} KiB")
            total += len(data)
        try:
            self._arm()
            flat: list[int] = []
            if total:
                at = self._buffer_ptr if total <= self._buffer_cap else self._buffer(total)
                if at + total > _memory_size(self._ctx, self._mem):  # memory cannot shrink; be sure anyway
                    raise PluginTrap(f"{name}: the delivery buffer is outside the plugin's memory", "trap")
                # one copy into the plugin's memory for all the buffers (each C call costs more than
                # joining a few hundred bytes here)
                _memmove((_memory_data(self._ctx, self._mem) or 0) + at, b"".join(buffers), total)
                for data in buffers:
                    size = len(data)
                    if size:
                        flat += (at, size)
                        at += size
                    else:
                        flat += (0, 0)
            else:
                flat = [0] * (2 * len(buffers))
            return self.calls[name](*flat)
        except wasmtime.Trap as trap:
            raise as_plugin_trap(trap) from None
        except wasmtime.WasmtimeError as exc:
            raise PluginTrap(f"{name}: {str(exc).splitlines()[0]}", "trap") from None

    def _buffer(self, size: int) -> int:
        if size <= self._buffer_cap:
            return self._buffer_ptr
        if self._buffer_ptr:
            self.calls["dealloc"](self._buffer_ptr, self._buffer_cap)
            self._buffer_ptr = self._buffer_cap = 0
        cap = max(4096, 1 << (size - 1).bit_length())
        ptr = self.calls["alloc"](cap)
        if ptr <= 0 or ptr + cap > _memory_size(self._ctx, self._mem):
            raise PluginTrap(f"alloc({cap}) gave no usable buffer", "trap")
        self._buffer_ptr, self._buffer_cap = ptr, cap
        return ptr


def _host(fn: HostFunction) -> Callable[..., int]:
    def call(*args: int) -> int:
        try:
            return int(fn(*args))
        except Exception:  # a bug of ours must not become the plugin's trap; say it, answer FAILED
            log.exception("plugins: host import %s failed", getattr(fn, "__name__", fn))
            return abi.FAILED

    return call


def as_plugin_trap(trap: wasmtime.Trap) -> PluginTrap:
    code = trap.trap_code
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return PluginTrap("ran out of fuel (limits.fuel_per_call)", "out_of_fuel")
    if code == wasmtime.TrapCode.INTERRUPT:
        return PluginTrap("took longer than limits.time_per_call_ms", "timeout")
    what = code.name.lower().replace("_", " ") if code is not None else "trap"
    frames = trap.frames or []
    where = f" in {frames[0].func_name}" if frames and frames[0].func_name else ""
    return PluginTrap(f"trapped ({what}){where}", "trap")


def check_module(module: wasmtime.Module, declared: list[str]) -> None:
    """Refuse a module whose imports or exports are not the ABI (before it is instantiated)."""
    for imp in module.imports:
        if imp.module != abi.IMPORT_MODULE or imp.name not in abi.IMPORTS:
            raise ValueError(f"imports {imp.module}.{imp.name}, which the bridge does not provide "
                             f"(plugins import only {abi.IMPORT_MODULE}.hc_*)")
        if imp.name not in declared:
            raise ValueError(f"imports {imp.name} but does not declare it in host_imports_required")
        ty = imp.type
        if not isinstance(ty, wasmtime.FuncType) or not _is_i32(ty, abi.IMPORTS[imp.name], 1):
            raise ValueError(f"imports {imp.name} with the wrong signature (see plugins/pdk/ruview_plugin.h)")
    exports = {e.name: e.type for e in module.exports}
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        raise ValueError("exports no memory")
    for name, (params, results) in abi.EXPORTS.items():
        required = exports.get(name)
        if required is None:
            raise ValueError(f"does not export {name}")
        if not isinstance(required, wasmtime.FuncType) or not _is_i32(required, params, results):
            raise ValueError(f"exports {name} with the wrong signature ({params} i32 in, {results} out)")
    for name, (params, results) in abi.OPTIONAL_EXPORTS.items():
        optional = exports.get(name)
        if optional is not None and (not isinstance(optional, wasmtime.FuncType)
                                     or not _is_i32(optional, params, results)):
            raise ValueError(f"exports {name} with the wrong signature ({params} i32 in, {results} out)")


def _is_i32(ty: wasmtime.FuncType, params: int, results: int) -> bool:
    i32 = wasmtime.ValType.i32()
    return len(ty.params) == params and len(ty.results) == results \
        and all(p == i32 for p in ty.params) and all(r == i32 for r in ty.results)
