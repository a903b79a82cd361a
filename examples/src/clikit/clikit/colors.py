"""ANSI styling that switches itself off when output is not a terminal."""

import os
import sys

CODES = {"black": 30, "red": 31, "green": 32, "yellow": 33, "blue": 34, "magenta": 35, "cyan": 36, "white": 37}


def should_color(stream=None) -> bool:
    """Color only real terminals, and never when ``NO_COLOR`` is set."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def style(text: str, fg: str = None, bold: bool = False, underline: bool = False) -> str:
    """Wrap `text` in ANSI codes for the given foreground color and effects."""
    codes = []
    if fg:
        codes.append(str(CODES[fg]))
    if bold:
        codes.append("1")
    if underline:
        codes.append("4")
    if not codes:
        return text
    return f"\x1b[{';'.join(codes)}m{text}\x1b[0m"


def unstyle(text: str) -> str:
    """Remove ANSI escape sequences from `text`."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def echo(message: str = "", err: bool = False, color: bool = None, **styles) -> None:
    """Print `message`, styled when the target stream supports it."""
    stream = sys.stderr if err else sys.stdout
    use_color = should_color(stream) if color is None else color
    text = style(message, **styles) if use_color and styles else message
    print(text, file=stream)
