"""Describing models as JSON Schema documents."""

from modelkit.fields import IntField, ListField, ModelField, StrField


def field_schema(field) -> dict:
    """The JSON Schema of one field."""
    schema = {"type": field.type_name} if field.type_name not in ("any", "date") else {}
    if field.type_name == "date":
        schema = {"type": "string", "format": "date"}
    if field.description:
        schema["description"] = field.description
    if field.choices is not None:
        schema["enum"] = field.choices
    if isinstance(field, StrField):
        if field.min_length:
            schema["minLength"] = field.min_length
        if field.max_length is not None:
            schema["maxLength"] = field.max_length
        if field.pattern:
            schema["pattern"] = field.pattern
    if isinstance(field, IntField):
        if field.ge is not None:
            schema["minimum"] = field.ge
        if field.le is not None:
            schema["maximum"] = field.le
    if isinstance(field, ListField):
        schema["items"] = field_schema(field.item)
    if isinstance(field, ModelField):
        schema = model_schema(field.model)
    if field.nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def model_schema(cls) -> dict:
    """The JSON Schema of a model class, required fields listed."""
    properties = {}
    required = []
    for name, field in cls.__fields__.items():
        key = field.alias or name
        properties[key] = field_schema(field)
        if field.required:
            required.append(key)
    schema = {"title": cls.__name__, "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if cls.__doc__:
        schema["description"] = cls.__doc__.strip().split("\n")[0]
    return schema
