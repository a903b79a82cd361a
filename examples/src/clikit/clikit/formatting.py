"""Help text layout: wrapped paragraphs and two-column definition lists."""

import shutil
import textwrap


def terminal_width(default: int = 80) -> int:
    """The terminal width, capped so help stays readable."""
    return min(shutil.get_terminal_size((default, 24)).columns, 100)


def wrap_paragraphs(text: str, width: int, indent: str = "") -> str:
    """Re-wrap each blank-line-separated paragraph of `text`."""
    paragraphs = [p.strip() for p in text.strip().split("\n\n") if p.strip()]
    wrapped = [textwrap.fill(" ".join(p.split()), width, initial_indent=indent, subsequent_indent=indent) for p in paragraphs]
    return "\n\n".join(wrapped)


def definition_list(rows, width: int, gap: int = 2) -> str:
    """Lay out ``(term, description)`` rows in two aligned columns.

    Terms longer than a third of the width push their description to the
    next line.
    """
    rows = list(rows)
    if not rows:
        return ""
    first = min(max(len(term) for term, _ in rows), width // 3)
    lines = []
    for term, text in rows:
        body_width = max(width - first - gap - 2, 20)
        body = textwrap.wrap(text, body_width) or [""]
        if len(term) > first:
            lines.append("  " + term)
            lines.extend(" " * (first + gap + 2) + line for line in body)
        else:
            lines.append("  " + term.ljust(first + gap) + body[0])
            lines.extend(" " * (first + gap + 2) + line for line in body[1:])
    return "\n".join(lines)


class HelpFormatter:
    """Accumulates help sections and renders them at a fixed width."""

    def __init__(self, width: int = None):
        self.width = width or terminal_width()
        self.parts = []

    def write_usage(self, prog: str, args: str) -> None:
        """Add the ``Usage:`` line."""
        self.parts.append(f"Usage: {prog} {args}".rstrip())

    def write_text(self, text: str) -> None:
        """Add a wrapped paragraph block."""
        if text:
            self.parts.append(wrap_paragraphs(text, self.width, indent="  "))

    def write_section(self, title: str, rows) -> None:
        """Add a titled definition list, skipped when empty."""
        body = definition_list(rows, self.width)
        if body:
            self.parts.append(f"{title}:\n{body}")

    def getvalue(self) -> str:
        """The help text, sections separated by blank lines."""
        return "\n\n".join(self.parts) + "\n"
