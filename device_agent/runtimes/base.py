"""The one interface every runtime adapter implements: load, infer, close."""
import functools
import importlib
import importlib.util
import sys

try:
    import importlib.metadata as importlib_metadata
except ImportError:  # pragma: no cover - Python < 3.8 is not supported, but fail clearly
    importlib_metadata = None

from .. import AgentError


class RuntimeAdapter(object):
    name = ""           # registry name, equal to the file name
    module = ""         # the Python module that must import on the device
    distributions = ()  # pip distributions that provide it, for a version without importing it
    install_hint = ""   # what to tell a user whose device lacks it
    install_note = ""   # where pip is not the way (a Jetson's TensorRT comes with JetPack), said after the hint
    options = {}        # runtime.options this adapter reads: name -> kind (device_agent.manifest.OPTION_KINDS)

    def __init__(self, threads, options=None):
        self.threads = threads
        self.options = dict(options or {})

    @classmethod
    def installed_version(cls):
        """The runtime's version, or None when it is not installed. Found from package metadata
        where possible: importing a runtime costs a device 0.2-1 s and tens of MiB."""
        if importlib.util.find_spec(cls.module) is None:
            return None
        for dist in cls.distributions:
            try:
                return importlib_metadata.version(dist)
            except importlib_metadata.PackageNotFoundError:
                continue
        try:  # built from source or vendored: only an import can tell
            mod = importlib.import_module(cls.module)
        except ImportError:
            return None
        return getattr(mod, "__version__", "unknown")

    @classmethod
    def missing_helpers(cls):
        """Names of further packages the adapter needs beside its runtime (none for most)."""
        return []

    def import_module(self):
        """Import the runtime in the measuring process; a broken install is a one-line error."""
        try:
            return importlib.import_module(self.module)
        except ImportError as e:
            raise AgentError("this device's Python (%s) cannot import %s (%s): install it with `%s -m %s`"
                             % (sys.executable, self.module, e, sys.executable, self.install_hint))

    def load(self, model_path):
        raise NotImplementedError

    def infer(self, feed):
        """Run once on {input name: array}; returns the list of output arrays."""
        raise NotImplementedError

    def follow_outputs(self, names):
        """Give the outputs in the order of `names`, the manifest's (after load); a runtime whose order is the
        model's own needs nothing."""

    def close(self):
        pass

    def bind(self, feed):
        """A zero-argument callable for the timed loop; adapters override it to shave call overhead."""
        return functools.partial(self.infer, feed)

    def timing(self, on):
        """Called with True just before the timed loop and False just after it, so an adapter that keeps its
        own per-call figures (the GPU time of TensorRT's CUDA events) keeps those of the timed calls only."""

    def describe(self):
        """Settings the runtime actually used, for the result document."""
        return {"threads": self.threads, "options": self.options}

    def throughput_hint(self):
        """Whether the bundle asks for throughput (then FPS is measured without --throughput)."""
        return False

    def throughput(self, feed, settings):
        """The result's throughput section: completed inferences / wall time with several in flight
        (device_agent.measure.throughput), or {"available": False, "reason": ...}."""
        return {"available": False, "reason": "the %s adapter has no concurrent runner" % self.name}

    def profile_layers(self, feed, runs, scratch_dir):
        """The result's layer_profile section from the runtime's own profiler (device_agent.measure.layers)."""
        return {"available": False, "reason": "the %s adapter has no per-layer profiler" % self.name}
