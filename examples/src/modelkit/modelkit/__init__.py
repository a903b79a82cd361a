"""modelkit: declarative, validated data models."""

from modelkit.errors import ValidationError
from modelkit.fields import Field, IntField, StrField, FloatField, BoolField, ListField, ModelField
from modelkit.models import Model
from modelkit.validators import validator

__all__ = ["BoolField", "Field", "FloatField", "IntField", "ListField", "Model", "ModelField", "StrField", "ValidationError", "validator"]
