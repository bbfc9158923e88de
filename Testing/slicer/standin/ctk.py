"""Stand-in of the ``ctk`` module: the CTK widgets the module's .ui uses."""

from slicer._widgets import ctkCollapsibleButton  # noqa: F401
