"""Reading and writing models as JSON and JSON Lines."""

import json

from modelkit.errors import ValidationError


def to_json(model, indent: int = None) -> str:
    """Serialise one model as JSON."""
    return json.dumps(model.to_dict(by_alias=True), indent=indent, default=str)


def from_json(cls, text: str):
    """Parse JSON text into an instance of `cls`."""
    return cls.from_dict(json.loads(text))


def dump_jsonl(models, fh) -> int:
    """Write one model per line; return how many were written."""
    count = 0
    for model in models:
        fh.write(to_json(model) + "\n")
        count += 1
    return count


def load_jsonl(cls, fh, skip_invalid: bool = False):
    """Yield instances from a JSON Lines stream.

    With `skip_invalid`, lines that fail validation are skipped instead of
    raising; the errors carry the line number in their location.
    """
    for number, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            yield cls.from_dict(json.loads(line))
        except ValidationError as exc:
            if not skip_invalid:
                raise ValidationError([e.prefixed(f"line {number}") for e in exc.errors], cls.__name__)
