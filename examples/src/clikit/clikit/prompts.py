"""Asking the user questions on the terminal."""

import getpass

from clikit.errors import Abort, BadParameter
from clikit.types import resolve_type


def prompt(text: str, default=None, type=None, hide_input: bool = False, input_fn=input):
    """Ask for a value until it converts; an empty answer takes `default`."""
    converter = resolve_type(type)
    suffix = f" [{default}]" if default is not None else ""
    while True:
        try:
            answer = (getpass.getpass if hide_input else input_fn)(f"{text}{suffix}: ")
        except (KeyboardInterrupt, EOFError):
            raise Abort()
        if not answer and default is not None:
            return default
        try:
            return converter.convert(answer)
        except BadParameter as exc:
            print(f"Error: {exc}")


def confirm(text: str, default: bool = False, abort: bool = False, input_fn=input) -> bool:
    """Ask a yes/no question; with `abort`, a no raises `Abort`."""
    hint = "[Y/n]" if default else "[y/N]"
    while True:
        try:
            answer = input_fn(f"{text} {hint}: ").strip().lower()
        except (KeyboardInterrupt, EOFError):
            raise Abort()
        if not answer:
            value = default
        elif answer in ("y", "yes"):
            value = True
        elif answer in ("n", "no"):
            value = False
        else:
            print("Please answer y or n.")
            continue
        if abort and not value:
            raise Abort()
        return value


def choose(text: str, options, input_fn=input) -> str:
    """Show a numbered menu and return the chosen option."""
    for number, item in enumerate(options, 1):
        print(f"  {number}) {item}")
    while True:
        answer = prompt(text, type=int, input_fn=input_fn)
        if 1 <= answer <= len(options):
            return options[answer - 1]
        print(f"Please pick a number from 1 to {len(options)}.")
