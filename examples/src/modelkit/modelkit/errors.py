"""Validation errors that collect every problem, each with its location."""


class ErrorDetail:
    """One problem: where it is (a path of field names and indexes) and what."""

    def __init__(self, loc, message: str, code: str = "invalid"):
        self.loc = tuple(loc)
        self.message = message
        self.code = code

    def as_dict(self) -> dict:
        """A JSON-friendly form, with the location joined by dots."""
        return {"loc": ".".join(str(p) for p in self.loc), "msg": self.message, "code": self.code}

    def prefixed(self, *prefix):
        """The same error, located under `prefix` (used for nested models)."""
        return ErrorDetail(tuple(prefix) + self.loc, self.message, self.code)


class ValidationError(ValueError):
    """Raised when data does not fit a model; holds all the problems found.

    Validation does not stop at the first bad field, so a form can show
    every message at once.
    """

    def __init__(self, errors, model_name: str = "model"):
        self.errors = list(errors)
        self.model_name = model_name
        super().__init__(self.summary())

    def summary(self) -> str:
        """A multi-line description, one problem per line."""
        lines = [f"{len(self.errors)} validation error(s) for {self.model_name}"]
        for err in self.errors:
            where = ".".join(str(p) for p in err.loc) or "(root)"
            lines.append(f"  {where}: {err.message}")
        return "\n".join(lines)

    def as_list(self) -> list:
        """Every problem as a dictionary."""
        return [e.as_dict() for e in self.errors]


class FieldError(Exception):
    """Raised inside a field or validator; the model adds the location."""

    def __init__(self, message: str, code: str = "invalid"):
        super().__init__(message)
        self.code = code
