"""The shell commands README.md shows: every line of its ```sh blocks, and the inline `code` of its
usage sections that is a command (`make …`, `cargo …`, `kubectl …`, `tests/… args`, `.venv/… args`)."""
import re
from dataclasses import dataclass

from testbed import ROOT

README = ROOT / "README.md"
# The sections a user follows (## headings, with their ### subsections).
USAGE_SECTIONS = ("The two commands", "Trying the functions with cargo lambda", "Deploy",
                  "Packaging and deploying", "Tests")
COMMAND_PREFIXES = ("make ", "cargo ", "kubectl ", "tests/", ".venv/")


@dataclass(frozen=True)
class Command:
    text: str
    section: str
    line: int


def strip_comment(line):
    """`make demo   # the demo` → `make demo`: a # after white space, outside quotes."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def is_command(code):
    return code.startswith(COMMAND_PREFIXES) and " " in code.strip()


def sections(text=None):
    """{## heading: its text}, in README order."""
    text = README.read_text() if text is None else text
    found, current = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            found[current] = ""
        elif current is not None:
            found[current] += line + "\n"
    return found


def commands(text=None):
    text = README.read_text() if text is None else text
    found, section, fence, prose = [], "", None, []

    def flush_prose():
        paragraph = "\n".join(line for _, line in prose)
        for match in re.finditer(r"`([^`]+)`", paragraph):
            code = " ".join(match.group(1).split())
            if section in USAGE_SECTIONS and is_command(code):
                line = prose[0][0] + paragraph[:match.start()].count("\n")
                found.append(Command(code, section, line))
        prose.clear()

    for number, line in enumerate(text.splitlines(), 1):
        if fence is not None:
            if line.startswith("```"):
                fence = None
            elif fence == "sh" and strip_comment(line).strip():
                found.append(Command(strip_comment(line).strip(), section, number))
            continue
        if line.startswith("```"):
            flush_prose()
            fence = line[3:].strip()
            continue
        if line.startswith("## "):
            flush_prose()
            section = line[3:].strip()
            continue
        if not line.strip():
            flush_prose()
            continue
        prose.append((number, line))
    flush_prose()
    return found
