"""Everything is declared in pyproject.toml; this file only ships the top-level profiles/ inside the wheel.

The hardware profiles live at the repository's top level (one TOML per target, where users look for them).
An editable install reads them there; a wheel (`pip install .`) carries a copy as edgeopt/profiles/, which
edgeopt.profiles.profile_dirs() also searches.
"""
import pathlib
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithProfiles(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        target = pathlib.Path(self.build_lib) / "edgeopt" / "profiles"
        target.mkdir(parents=True, exist_ok=True)
        for toml in sorted(pathlib.Path(__file__).resolve().parent.joinpath("profiles").glob("*.toml")):
            shutil.copy2(toml, target / toml.name)


setup(cmdclass={"build_py": BuildWithProfiles})
