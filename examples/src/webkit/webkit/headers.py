"""A case-insensitive, multi-valued header mapping."""


class Headers:
    """HTTP headers: names compare case-insensitively, a name may repeat.

    Order is preserved so responses are written exactly as built.
    """

    def __init__(self, items=None):
        self._items = []
        for name, value in items or []:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append a header, keeping any existing values of the same name."""
        self._items.append((name, str(value)))

    def set(self, name: str, value: str) -> None:
        """Replace every value of `name` with a single `value`."""
        self.remove(name)
        self.add(name, value)

    def get(self, name: str, default=None):
        """Return the first value of `name`, or `default`."""
        key = name.lower()
        for item_name, value in self._items:
            if item_name.lower() == key:
                return value
        return default

    def get_all(self, name: str) -> list:
        """Return every value of `name`, in order."""
        key = name.lower()
        return [v for n, v in self._items if n.lower() == key]

    def remove(self, name: str) -> None:
        """Drop every value of `name`."""
        key = name.lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def items(self):
        """Iterate over ``(name, value)`` pairs in insertion order."""
        return iter(self._items)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __len__(self) -> int:
        return len(self._items)


def parse_header_params(value: str):
    """Split ``text/html; charset=utf-8`` into the main value and its params.

    >>> parse_header_params("text/html; charset=utf-8")
    ('text/html', {'charset': 'utf-8'})
    """
    main, _, rest = value.partition(";")
    params = {}
    for part in rest.split(";"):
        key, sep, val = part.strip().partition("=")
        if sep:
            params[key.lower()] = val.strip('"')
    return main.strip().lower(), params
