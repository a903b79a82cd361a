"""A note-taking tool built with clikit."""

import json
import os

from clikit import argument, group, option
from clikit.colors import echo
from clikit.prompts import confirm

STORE = os.path.expanduser("~/.notes.json")


def load_notes(path: str = STORE) -> list:
    """Read the notes file, or start empty."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def save_notes(notes: list, path: str = STORE) -> None:
    """Write the notes file atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(notes, fh, indent=2)
    os.replace(tmp, path)


@group()
@option("store", envvar="NOTES_FILE", default=STORE, help="Where notes are kept.")
def notes(store):
    """Keep short notes from the command line."""


@notes.command()
@argument("text", nargs=-1)
@option("tag", short="t", multiple=True, help="Tag the note; repeatable.")
def add(text, tag):
    """Add a note."""
    items = load_notes()
    items.append({"text": " ".join(text), "tags": tag or []})
    save_notes(items)
    echo(f"Saved note {len(items)}.", fg="green")


@notes.command(name="list")
@option("tag", short="t", help="Only notes with this tag.")
def list_notes(tag):
    """List notes, newest last."""
    for number, note in enumerate(load_notes(), 1):
        if tag is None or tag in note["tags"]:
            echo(f"{number:3}  {note['text']}")


@notes.command()
@argument("number", type=int)
@option("yes", short="y", default=False, help="Do not ask for confirmation.")
def remove(number, yes):
    """Delete a note by number."""
    items = load_notes()
    if not 1 <= number <= len(items):
        echo(f"No note {number}.", err=True, fg="red")
        return 1
    if yes or confirm(f"Delete note {number}?", abort=True):
        del items[number - 1]
        save_notes(items)
    return 0


if __name__ == "__main__":
    raise SystemExit(notes.main())
