"""Stand-in of the ``qt`` module (PythonQt) with PySide6: every public ``Q*`` class of
QtCore, QtGui and QtWidgets, and the ``Qt`` namespace, under their Qt names."""

from PySide6 import QtCore as _QtCore
from PySide6 import QtGui as _QtGui
from PySide6 import QtWidgets as _QtWidgets

for _module in (_QtCore, _QtGui, _QtWidgets):
    for _name in dir(_module):
        if _name.startswith("Q") or _name == "Qt":
            globals()[_name] = getattr(_module, _name)
del _module, _name
