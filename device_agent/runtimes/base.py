"""The one interface every runtime adapter implements: load, infer, close."""
import functools
import importlib


class RuntimeAdapter(object):
    name = ""           # registry name, equal to the file name
    module = ""         # the Python module that must import on the device
    install_hint = ""   # what to tell a user whose device lacks it

    def __init__(self, threads, options=None):
        self.threads = threads
        self.options = dict(options or {})

    @classmethod
    def installed_version(cls):
        """The runtime's version, or None when it is not installed (no model is loaded)."""
        try:
            mod = importlib.import_module(cls.module)
        except ImportError:
            return None
        return getattr(mod, "__version__", "unknown")

    def load(self, model_path):
        raise NotImplementedError

    def infer(self, feed):
        """Run once on {input name: array}; returns the list of output arrays."""
        raise NotImplementedError

    def close(self):
        pass

    def bind(self, feed):
        """A zero-argument callable for the timed loop; adapters override it to shave call overhead."""
        return functools.partial(self.infer, feed)

    def describe(self):
        """Settings the runtime actually used, for the result document."""
        return {"threads": self.threads, "options": self.options}
