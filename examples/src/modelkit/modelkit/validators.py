"""Custom validation: per-field and whole-model validator functions."""

import re

from modelkit.errors import FieldError

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[a-zA-Z]{2,}")


def validator(*fields: str, mode: str = "after"):
    """Mark a model method as a validator of `fields`.

    With no fields it validates the whole model after every field is set;
    `mode="before"` runs it on the raw input value instead.
    """
    if mode not in ("before", "after"):
        raise ValueError("mode must be 'before' or 'after'")

    def decorator(fn):
        fn.__modelkit_validator__ = (tuple(fields), mode)
        return fn

    return decorator


def collect_validators(namespace: dict):
    """Find the validator methods of a class body, in definition order."""
    found = []
    for name, value in namespace.items():
        spec = getattr(value, "__modelkit_validator__", None)
        if spec is not None:
            found.append((name, spec[0], spec[1]))
    return found


def is_email(value: str) -> str:
    """Check an e-mail address loosely and return it lower-cased."""
    if not EMAIL.fullmatch(value):
        raise FieldError("is not a valid e-mail address", code="email")
    return value.lower()


def is_slug(value: str) -> str:
    """Check a URL slug: lower-case letters, digits and dashes."""
    if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", value):
        raise FieldError("is not a valid slug", code="slug")
    return value


def not_blank(value: str) -> str:
    """Refuse strings that are empty after trimming."""
    if not value.strip():
        raise FieldError("may not be blank", code="blank")
    return value


def in_range(low, high):
    """Build a validator that keeps values within ``[low, high]``."""
    def check(value):
        if not low <= value <= high:
            raise FieldError(f"must be between {low} and {high}", code="range")
        return value

    return check
