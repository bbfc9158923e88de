"""Stand-in of ``slicer.parameterNodeWrapper``: typed properties stored in a scripted module
node, validators, and ``connectGui`` for the widget kinds the module binds (node selectors,
check boxes, checkable push buttons, spin boxes, enum combo boxes, line edits).

Values are stored the way Slicer's serializers store them: nodes as node references, other
values as string parameters.
"""

import enum
import typing

import slicer

__all__ = ["parameterNodeWrapper", "Validator", "WithinRange", "Choice"]

SlicerParameterNamePropertyName = "SlicerParameterName"


class Validator:
    def validate(self, value):
        raise NotImplementedError


class WithinRange(Validator):
    def __init__(self, minimum, maximum):
        self.minimum = minimum
        self.maximum = maximum

    def validate(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value {value} must be within range [{self.minimum}, {self.maximum}]")


class Choice(Validator):
    def __init__(self, choices):
        self.choices = tuple(choices)

    def validate(self, value):
        if value not in self.choices:
            raise ValueError(f"Value {value} is not one of {self.choices}")


def _isNodeType(valueType):
    return isinstance(valueType, type) and issubclass(valueType, slicer.vtkMRMLNode)


class _Parameter:
    def __init__(self, name, valueType, validators, default):
        self.name = name
        self.valueType = valueType
        self.validators = validators
        self.default = default

    def isIn(self, node):
        if _isNodeType(self.valueType):
            return True
        return node.HasParameter(self.name)

    def read(self, node):
        if _isNodeType(self.valueType):
            return node.GetNodeReference(self.name)
        text = node.GetParameter(self.name)
        if self.valueType is bool:
            return text == "True"
        if self.valueType in (int, float):
            return self.valueType(text)
        if isinstance(self.valueType, type) and issubclass(self.valueType, enum.Enum):
            return self.valueType[text]
        return text

    def write(self, node, value):
        for validator in self.validators:
            validator.validate(value)
        if _isNodeType(self.valueType):
            if value is not None and not isinstance(value, self.valueType):
                raise TypeError(f"{self.name} must be a {self.valueType.__name__}")
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
        elif isinstance(self.valueType, type) and issubclass(self.valueType, enum.Enum):
            node.SetParameter(self.name, self.valueType(value).name)
        else:
            node.SetParameter(self.name, str(self.valueType(value)))


def _connector(widget, parameter):
    """(write(value), connect(callback), read()) for one widget, with PySide6's API."""
    from PySide6.QtWidgets import (
        QCheckBox,
        QComboBox,
        QDoubleSpinBox,
        QLineEdit,
        QPushButton,
        QSpinBox,
    )

    # only the (widget, type) pairs that Slicer's connectors accept (manifest "gui_connectors")
    valueType = parameter.valueType
    if isinstance(widget, slicer.qMRMLNodeComboBox):
        if not _isNodeType(valueType):
            raise RuntimeError(f"a node selector cannot hold {valueType}")
        return widget.setCurrentNode, widget.currentNodeChanged.connect, widget.currentNode
    if isinstance(widget, QCheckBox) and valueType is bool:
        return widget.setChecked, widget.toggled.connect, widget.isChecked
    if isinstance(widget, QPushButton) and widget.isCheckable() and valueType is bool:
        return widget.setChecked, widget.toggled.connect, widget.isChecked
    if isinstance(widget, QSpinBox) and valueType is int:
        # Qt clamps to the spin box's range; the clamped value is what the node then holds
        return widget.setValue, widget.valueChanged.connect, widget.value
    if isinstance(widget, QDoubleSpinBox) and valueType in (int, float):
        # Qt rounds to the spin box's decimals and clamps to its range
        return widget.setValue, widget.valueChanged.connect, lambda: valueType(widget.value())
    if isinstance(widget, QComboBox) and issubclass(valueType, enum.Enum):
        members = list(valueType)
        widget.clear()
        for member in members:
            widget.addItem(member.label() if hasattr(member, "label") else member.name)
        return (
            lambda value: widget.setCurrentIndex(members.index(value)),
            widget.currentIndexChanged.connect,
            lambda: members[widget.currentIndex()],
        )
    if isinstance(widget, QLineEdit) and valueType is str:
        return widget.setText, widget.textChanged.connect, widget.text
    raise RuntimeError(f"no GUI connector for {type(widget).__name__} and {valueType}")


def parameterNodeWrapper(classtype=None):
    def wrap(cls):
        parameters = {}
        for name, annotated in typing.get_type_hints(cls, include_extras=True).items():
            validators = []
            valueType = annotated
            if typing.get_origin(annotated) is typing.Annotated:
                valueType, *extras = typing.get_args(annotated)
                validators = [extra for extra in extras if isinstance(extra, Validator)]
            if hasattr(cls, name):
                default = getattr(cls, name)
            elif _isNodeType(valueType):
                default = None
            elif isinstance(valueType, type) and issubclass(valueType, enum.Enum):
                default = next(iter(valueType))
            else:
                default = valueType()
            parameters[name] = _Parameter(name, valueType, validators, default)
            setattr(
                cls,
                name,
                property(
                    lambda self, name=name: self.getValue(name),
                    lambda self, value, name=name: self.setValue(name, value),
                ),
            )

        def __init__(self, parameterNode):
            self.parameterNode = parameterNode
            self._guis = {}
            self._nextTag = 0
            self._updatingGui = False
            for parameter in parameters.values():
                if not parameter.isIn(parameterNode):
                    parameter.write(parameterNode, parameter.default)

        def getValue(self, name):
            return parameters[name].read(self.parameterNode)

        def setValue(self, name, value):
            parameters[name].write(self.parameterNode, value)

        def connectGui(self, gui):
            widgets = [child for child in vars(gui).values() if hasattr(child, "property")]
            mapping = {}
            for widget in widgets:
                name = widget.property(SlicerParameterNamePropertyName)
                if name:
                    mapping[name] = _connector(widget, parameters[name])
            tag = self._nextTag
            self._nextTag += 1

            def updateGui(caller=None, event=None):
                if self._updatingGui:
                    return
                self._updatingGui = True
                try:
                    for name, (write, _connect, _read) in mapping.items():
                        write(self.getValue(name))
                finally:
                    self._updatingGui = False

            def guiChanged(name, read):
                def callback(*args):
                    # a disconnected GUI (after disconnectGui) no longer writes
                    if tag in self._guis and not self._updatingGui:
                        self.setValue(name, read())

                return callback

            callbacks = []
            updateGui()
            for name, (_write, connect, read) in mapping.items():
                callback = guiChanged(name, read)
                connect(callback)
                callbacks.append(callback)
            # as in Slicer, a widget that could not show the value (clamped, rounded) writes
            # what it shows back into the node
            self._guis[tag] = (None, callbacks)
            for name, (_write, _connect, read) in mapping.items():
                if read() != self.getValue(name):
                    self.setValue(name, read())
            observerTag = self.parameterNode.AddObserver("ModifiedEvent", updateGui)
            self._guis[tag] = (observerTag, callbacks)
            return tag

        def disconnectGui(self, tag):
            if tag in self._guis:
                observerTag, callbacks = self._guis.pop(tag)
                self.parameterNode.RemoveObserver(observerTag)
                callbacks.clear()

        cls.allParameters = parameters
        cls._is_parameter_node_wrapper = True
        cls.__init__ = __init__
        cls.getValue = getValue
        cls.setValue = setValue
        cls.connectGui = connectGui
        cls.disconnectGui = disconnectGui
        cls.StartModify = lambda self: self.parameterNode.StartModify()
        cls.EndModify = lambda self, wasModified: self.parameterNode.EndModify(wasModified)
        cls.AddObserver = lambda self, event, callback, priority=0.0: (
            self.parameterNode.AddObserver(event, callback, priority)
        )
        cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
        cls.Modified = lambda self: self.parameterNode.Modified()
        return cls

    return wrap(classtype) if classtype is not None else wrap
