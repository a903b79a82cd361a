"""The `Model` base class: field collection, validation, dumping."""

from modelkit.errors import ErrorDetail, FieldError, ValidationError
from modelkit.fields import Field
from modelkit.validators import collect_validators


class ModelMeta(type):
    """Collects the fields and validators of a model class and its bases."""

    def __new__(mcs, name, bases, namespace):
        cls = super().__new__(mcs, name, bases, namespace)
        fields = {}
        validators = []
        for base in reversed(cls.__mro__[1:]):
            fields.update(getattr(base, "__fields__", {}))
            validators.extend(getattr(base, "__validators__", []))
        for key, value in namespace.items():
            if isinstance(value, Field):
                fields[key] = value
        validators.extend(collect_validators(namespace))
        cls.__fields__ = fields
        cls.__validators__ = validators
        return cls


class Model(metaclass=ModelMeta):
    """Base class of declarative models.

    Declare fields as class attributes; construct with keyword arguments
    (or field aliases). Every problem is collected into one
    `ValidationError`.

    >>> class Point(Model):
    ...     x = IntField()
    ...     y = IntField(default=0)
    >>> Point(x="3").x
    3
    """

    class Config:
        """Per-model options; subclasses override what they need."""

        extra = "ignore"
        frozen = False

    def __init__(self, **data):
        errors = []
        by_alias = {f.alias: name for name, f in self.__fields__.items() if f.alias}
        data = {by_alias.get(k, k): v for k, v in data.items()}
        unknown = set(data) - set(self.__fields__)
        if unknown and self.Config.extra == "forbid":
            errors.extend(ErrorDetail((k,), "unexpected field", "extra") for k in sorted(unknown))
        for name, field in self.__fields__.items():
            raw = data.get(name, field.get_default() if not field.required else None)
            if name not in data and field.required:
                errors.append(ErrorDetail((name,), "field required", "missing"))
                continue
            try:
                raw = self._run_validators(name, raw, "before")
                value = field.clean(raw)
                value = self._run_validators(name, value, "after")
                self.__dict__[name] = value
            except FieldError as exc:
                errors.append(ErrorDetail((name,), str(exc), exc.code))
            except ValidationError as exc:
                errors.extend(e.prefixed(name) for e in exc.errors)
        if not errors:
            errors.extend(self._run_model_validators())
        if errors:
            raise ValidationError(errors, type(self).__name__)

    def _run_validators(self, name, value, mode):
        for method, fields, when in self.__validators__:
            if name in fields and when == mode:
                value = getattr(type(self), method)(value)
        return value

    def _run_model_validators(self):
        errors = []
        for method, fields, _ in self.__validators__:
            if not fields:
                try:
                    getattr(self, method)()
                except FieldError as exc:
                    errors.append(ErrorDetail((), str(exc), exc.code))
        return errors

    def __setattr__(self, name, value):
        if self.Config.frozen:
            raise AttributeError(f"{type(self).__name__} is frozen")
        super().__setattr__(name, value)

    def to_dict(self, by_alias: bool = False, exclude_none: bool = False) -> dict:
        """Plain data for this model, nested models included."""
        out = {}
        for name, field in self.__fields__.items():
            value = self.__dict__.get(name)
            if exclude_none and value is None:
                continue
            key = field.alias if by_alias and field.alias else name
            out[key] = field.dump(value) if value is not None else None
        return out

    def copy(self, **changes):
        """A new instance with `changes` applied and validated."""
        data = self.to_dict()
        data.update(changes)
        return type(self)(**data)

    @classmethod
    def from_dict(cls, data: dict):
        """Build an instance from a dictionary (keys may be aliases)."""
        return cls(**data)

    @classmethod
    def field_names(cls) -> list:
        """The names of every field, in declaration order."""
        return list(cls.__fields__)

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{type(self).__name__}({inner})"
