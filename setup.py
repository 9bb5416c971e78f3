"""Which packages the wheel holds; the rest of the metadata is in pyproject.toml.

One import name: the repository keeps flows/, tasks/, storage/ and deployments/ at its top level
(the design card's layout) and installs them as varflow.flows, varflow.tasks, varflow.storage
and varflow.deployments (package-dir mapping), so a user's site-packages holds only ``varflow``.
notebooks/ installs as varflow.notebooks: the notebooks are package data (``varflow examples``).
"""

from setuptools import find_packages, setup

TOP_LEVEL = ("flows", "tasks", "storage", "deployments", "notebooks")

packages = find_packages(include=["varflow", "varflow.*"])
packages += [f"varflow.{p}" for p in find_packages(include=[f"{t}{s}" for t in TOP_LEVEL for s in ("", ".*")])]
setup(packages=packages,
      package_dir={"varflow": "varflow", **{f"varflow.{t}": t for t in TOP_LEVEL}})
