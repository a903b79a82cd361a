"""Field descriptors: type coercion, defaults and constraints."""

import datetime

from modelkit.errors import ErrorDetail, FieldError, ValidationError

MISSING = object()


class Field:
    """A model attribute with a type check, a default and constraints.

    Subclasses implement `coerce`; constraints shared by every type
    (`choices`, `nullable`) are handled here.
    """

    type_name = "any"

    def __init__(self, default=MISSING, default_factory=None, nullable: bool = False, choices=None, alias: str = None, description: str = ""):
        self.default = default
        self.default_factory = default_factory
        self.nullable = nullable
        self.choices = list(choices) if choices is not None else None
        self.alias = alias
        self.description = description
        self.name = None

    def __set_name__(self, owner, name):
        self.name = name

    @property
    def required(self) -> bool:
        """A field without a default must be given."""
        return self.default is MISSING and self.default_factory is None

    def get_default(self):
        """A fresh default value (factories are called every time)."""
        if self.default_factory is not None:
            return self.default_factory()
        return self.default

    def coerce(self, value):
        """Convert `value` to this field's type or raise `FieldError`."""
        return value

    def clean(self, value):
        """Coerce, then check nullability and choices."""
        if value is None:
            if self.nullable:
                return None
            raise FieldError("may not be null", code="null")
        value = self.coerce(value)
        if self.choices is not None and value not in self.choices:
            raise FieldError(f"must be one of {self.choices!r}", code="choice")
        return value

    def dump(self, value):
        """Turn a cleaned value back into plain data."""
        return value

    def __get__(self, instance, owner):
        if instance is None:
            return self
        return instance.__dict__.get(self.name)

    def __set__(self, instance, value):
        instance.__dict__[self.name] = self.clean(value)


class StrField(Field):
    """Text, optionally trimmed and length-limited or pattern-checked."""

    type_name = "string"

    def __init__(self, min_length: int = 0, max_length: int = None, pattern: str = None, strip: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.min_length = min_length
        self.max_length = max_length
        self.pattern = pattern
        self.strip = strip

    def coerce(self, value):
        """Accept strings only; check length and pattern."""
        import re

        if not isinstance(value, str):
            raise FieldError("must be a string", code="type")
        if self.strip:
            value = value.strip()
        if len(value) < self.min_length:
            raise FieldError(f"must have at least {self.min_length} characters", code="too_short")
        if self.max_length is not None and len(value) > self.max_length:
            raise FieldError(f"must have at most {self.max_length} characters", code="too_long")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise FieldError(f"must match {self.pattern!r}", code="pattern")
        return value


class IntField(Field):
    """Integers; numeric strings are accepted, booleans are not."""

    type_name = "integer"

    def __init__(self, ge: int = None, le: int = None, **kwargs):
        super().__init__(**kwargs)
        self.ge = ge
        self.le = le

    def coerce(self, value):
        """Convert and check the bounds."""
        if isinstance(value, bool):
            raise FieldError("must be an integer", code="type")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise FieldError("must be an integer", code="type")
        if isinstance(value, float) and value != number:
            raise FieldError("must be a whole number", code="type")
        if self.ge is not None and number < self.ge:
            raise FieldError(f"must be >= {self.ge}", code="too_small")
        if self.le is not None and number > self.le:
            raise FieldError(f"must be <= {self.le}", code="too_large")
        return number


class FloatField(Field):
    """Real numbers."""

    type_name = "number"

    def coerce(self, value):
        """Convert ints, floats and numeric strings."""
        if isinstance(value, bool):
            raise FieldError("must be a number", code="type")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise FieldError("must be a number", code="type")


class BoolField(Field):
    """Booleans; also ``"true"``/``"false"`` and 1/0."""

    type_name = "boolean"

    def coerce(self, value):
        """Map the accepted spellings."""
        if isinstance(value, bool):
            return value
        if value in (1, "1", "true", "True"):
            return True
        if value in (0, "0", "false", "False"):
            return False
        raise FieldError("must be a boolean", code="type")


class DateField(Field):
    """Dates, from ``date`` objects or ISO ``YYYY-MM-DD`` strings."""

    type_name = "date"

    def coerce(self, value):
        """Parse ISO strings."""
        if isinstance(value, datetime.date):
            return value
        try:
            return datetime.date.fromisoformat(value)
        except (TypeError, ValueError):
            raise FieldError("must be a date (YYYY-MM-DD)", code="type")

    def dump(self, value):
        """Write the ISO form."""
        return value.isoformat() if value is not None else None


class ListField(Field):
    """A list whose items are cleaned by another field."""

    type_name = "array"

    def __init__(self, item: Field, min_items: int = 0, **kwargs):
        kwargs.setdefault("default_factory", list)
        super().__init__(**kwargs)
        self.item = item
        self.min_items = min_items

    def coerce(self, value):
        """Clean every item, collecting the errors with their index."""
        if not isinstance(value, (list, tuple)):
            raise FieldError("must be a list", code="type")
        if len(value) < self.min_items:
            raise FieldError(f"must have at least {self.min_items} items", code="too_short")
        cleaned, errors = [], []
        for index, item in enumerate(value):
            try:
                cleaned.append(self.item.clean(item))
            except FieldError as exc:
                errors.append(ErrorDetail((index,), str(exc), exc.code))
            except ValidationError as exc:
                errors.extend(e.prefixed(index) for e in exc.errors)
        if errors:
            raise ValidationError(errors)
        return cleaned

    def dump(self, value):
        """Dump every item."""
        return [self.item.dump(v) for v in value]


class ModelField(Field):
    """A nested model, built from a dictionary."""

    type_name = "object"

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    def coerce(self, value):
        """Accept an instance of the model or a dictionary for it."""
        if isinstance(value, self.model):
            return value
        if not isinstance(value, dict):
            raise FieldError("must be an object", code="type")
        return self.model(**value)

    def dump(self, value):
        """Dump the nested model."""
        return value.to_dict() if value is not None else None
