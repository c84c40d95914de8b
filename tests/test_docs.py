"""The README and docs/ stay true to the code: every relative link resolves, and every command-line flag they show
for one of our commands is one that command's --help lists.

Flags are read from fenced code blocks and from inline code. A flag belongs to the command named before it on the
same line (a line continued with a backslash counts from the line it started on; in prose, the nearest command
named on the line, before the flag if any, else after it). Flags on lines naming none of our commands (pytest's,
pip's) are skipped, and so are flags given to another program named on the line. Flags after a `--` separator are
passed on to train.py by `python -m exhubert_jax.protocol`, so they are checked against train.py's help. Each
distinct --help runs once, in the repository root, all of them at once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELP_TIMEOUT_S = 120

# The documented `python -m` commands. Any other `python -m exhubert_jax...` / `converters...` the docs show is
# checked too; these are also recognised when named bare (`converters.to_onnx`, `exhubert_jax.protocol`).
COMMAND_MODULES = (
    "exhubert_jax.data.prepare", "exhubert_jax.protocol", "exhubert_jax.embed", "exhubert_jax.adapters",
    "exhubert_jax.expansion", "converters.torch_to_flax", "converters.flax_to_torch", "converters.to_onnx",
)
CONSOLE_SCRIPTS = {"exhubert-train": "train.py", "exhubert-evaluate": "evaluate.py",
                   "exhubert-protocol": "-m exhubert_jax.protocol", "exhubert-prepare": "-m exhubert_jax.data.prepare"}
# Programs that are not ours: their flags are never attributed to one of our commands on the same line.
FOREIGN = r"pip3?|pytest|huggingface-cli|hf|tfds|git|iconv|srun|mpirun|sbatch|/usr/bin/time|nvidia-smi|curl|wget"
PROTOCOL = "-m exhubert_jax.protocol"

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE = re.compile(r"(`+)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.DOTALL)  # within one paragraph
FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
SEPARATOR = re.compile(r"(?<!\S)--(?!\S)")
MENTION = re.compile(
    r"(?P<pym>\bpython3?\s+-m\s+(?P<mod>[A-Za-z_][\w.]*\w))"
    r"|(?<![\w/.-])(?P<script>(?:bench/\w+|train|evaluate)\.py)\b"
    r"|(?<![\w./-])(?P<bare>(?:exhubert_jax|converters)(?:\.\w+)+)(?!\.?\w)"
    r"|(?<![\w/.-])(?P<console>exhubert-(?:train|evaluate|protocol|prepare))\b"
    rf"|(?<![\w/.-])(?P<foreign>{FOREIGN})(?![\w-])")


def doc_files() -> list[Path]:
    """README.md and every page of docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def split_code(text: str) -> tuple[list[str], list[bool]]:
    """The file's lines and, per line, whether it lies inside a fenced code block (fence lines count as code)."""
    lines = text.split("\n")
    in_code, fence, flags = False, "", []
    for line in lines:
        m = FENCE.match(line)
        if m and (not in_code or m.group(1) == fence):
            flags.append(True)
            in_code, fence = (not in_code), m.group(1)
        else:
            flags.append(in_code)
    return lines, flags


def prose(text: str) -> str:
    """The text with fenced code blocks blanked out (line numbers kept)."""
    lines, code = split_code(text)
    return "\n".join("" if c else line for line, c in zip(lines, code))


# ----------------------------------------------------------------------------------------------------------- links

def links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link and image outside code."""
    body = prose(text)
    body = INLINE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), body)  # inline code holds no links
    found = [(m.start(1), m.group(1)) for m in LINK.finditer(body)]
    found += [(m.start(1), m.group(1)) for m in REF_LINK.finditer(body)]
    return sorted((body.count("\n", 0, pos) + 1, target) for pos, target in found)


def is_external(target: str) -> bool:
    return bool(re.match(r"^(?:[a-z][a-z0-9+.-]*:|//)", target, re.IGNORECASE))


def test_relative_links_resolve():
    """Every relative link and image in README.md and docs/*.md names an existing file (anchors stripped)."""
    broken, seen = [], 0
    for doc in doc_files():
        for line, target in links(doc.read_text(encoding="utf-8")):
            if is_external(target):
                continue
            path = unquote(target.split("#", 1)[0].split("?", 1)[0])
            if not path:  # a link to an anchor of the same page
                continue
            seen += 1
            if not (doc.parent / path).exists():
                broken.append(f"{rel(doc)}:{line}: {target} (no such file)")
    assert seen, "no relative links found: is the link pattern broken?"
    assert not broken, "broken links:\n" + "\n".join(broken)


# ----------------------------------------------------------------------------------------------------------- flags

@dataclass(frozen=True)
class Use:
    """A flag shown for a command: where, which command (its --help argv tail), which flag."""

    file: str
    line: int
    command: tuple[str, ...]
    flag: str


@dataclass(frozen=True)
class Mention:
    start: int
    end: int
    command: tuple[str, ...] | None  # None: a program that is not ours


def command_of(m: re.Match) -> tuple[str, ...] | None:
    """The --help argv tail (after the interpreter) of a mentioned command; None for programs that are not ours."""
    if m.group("pym"):
        mod = m.group("mod")
        if mod in COMMAND_MODULES or mod.startswith(("exhubert_jax.", "converters.")):
            return ("-m", mod)
        return None
    if m.group("script"):
        return (m.group("script"),)
    if m.group("bare"):
        return ("-m", m.group("bare")) if m.group("bare") in COMMAND_MODULES else ()
    if m.group("console"):
        return tuple(CONSOLE_SCRIPTS[m.group("console")].split())
    return None


def mentions(text: str) -> list[Mention]:
    """Commands named in a piece of text. A bare module name that is no command is left out."""
    out = []
    for m in MENTION.finditer(text):
        cmd = command_of(m)
        if cmd != ():
            out.append(Mention(m.start(), m.end(), cmd))
    return out


def subcommand(text: str, mention: Mention) -> str | None:
    """The bare word right after a command (`folds` in `python -m exhubert_jax.protocol folds --folds ...`)."""
    m = re.match(r"\s+([a-z][\w-]*)(?=\s|$)", text[mention.end:])
    return m.group(1) if m else None


@dataclass(frozen=True)
class Found:
    """A flag at a position, attributed to a command (None: skip) with the bare word after the command, if any."""

    pos: int
    flag: str
    command: tuple[str, ...] | None
    word: str | None = None


def attribute(text: str, pos: int, flag: str, fallback: bool = False) -> Found:
    """The command a flag at `pos` in `text` belongs to: the one named last before it, or, with `fallback`, the
    first one named after it when none is named before. After that command's `--` separator, flags are the
    protocol runner's train.py flags (another command's are skipped)."""
    named = mentions(text)
    before = [m for m in named if m.end <= pos]
    if before:
        cmd = before[-1]
    elif fallback and any(m.start >= pos for m in named):
        cmd = next(m for m in named if m.start >= pos)
    else:
        return Found(pos, flag, None)
    if cmd.end <= pos and any(cmd.end <= s.start() < pos for s in SEPARATOR.finditer(text)):
        return Found(pos, flag, ("train.py",) if cmd.command == tuple(PROTOCOL.split()) else None)
    return Found(pos, flag, cmd.command, subcommand(text, cmd))


def flag_uses(path_name: str, text: str) -> list[tuple[Use, str | None]]:
    """(use, subcommand word) for every flag attributed to one of our commands in one Markdown file."""
    lines, code = split_code(text)
    uses: list[tuple[Use, str | None]] = []

    # Fenced code: logical lines (backslash continuations joined), flags attributed positionally.
    i = 0
    while i < len(lines):
        if not code[i] or FENCE.match(lines[i]):
            i += 1
            continue
        start, logical = i, lines[i]
        while (logical.rstrip().endswith("\\") and i + 1 < len(lines) and code[i + 1]
               and not FENCE.match(lines[i + 1])):
            i += 1
            logical = logical.rstrip()[:-1] + " " + lines[i]
        for m in FLAG.finditer(logical):
            f = attribute(logical, m.start(), m.group(0))
            if f.command:
                uses.append((Use(path_name, start + 1, f.command, f.flag), f.word))
        i += 1

    # Inline code in prose: the span's own command before the flag, else the commands named on the flag's line.
    body = prose(text)
    for span in INLINE.finditer(body):
        inner = span.group(2)
        for m in FLAG.finditer(inner):
            f = attribute(inner, m.start(), m.group(0))
            absolute = span.start(2) + m.start()
            lineno = body.count("\n", 0, absolute) + 1
            if f.command is None and not [x for x in mentions(inner) if x.end <= m.start()]:
                line_start = body.rfind("\n", 0, absolute) + 1
                line_end = body.find("\n", absolute)
                line_text = body[line_start:line_end if line_end >= 0 else len(body)]
                f = attribute(line_text, absolute - line_start, m.group(0), fallback=True)
            if f.command:
                uses.append((Use(path_name, lineno, f.command, f.flag), f.word))
    return uses


# ------------------------------------------------------------------------------------------------------ --help

def help_text(argv_tail: tuple[str, ...]) -> tuple[bool, str]:
    """(ran, output) of `python <argv_tail> --help` in the repository root."""
    env = {**os.environ, "EXHUBERT_NO_HUGEPAGES": "1", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run([sys.executable, *argv_tail, "--help"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=HELP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {HELP_TIMEOUT_S} s"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return False, f"exit {proc.returncode}: {tail[0]}"
    return True, proc.stdout + proc.stderr


def helps(argvs: set[tuple[str, ...]]) -> dict[tuple[str, ...], tuple[bool, str]]:
    """Every distinct --help, run at once."""
    argvs = sorted(argvs)
    with ThreadPoolExecutor(max_workers=min(8, len(argvs) or 1)) as pool:
        return dict(zip(argvs, pool.map(help_text, argvs)))


def subcommands(help_out: str) -> set[str]:
    """The choices of a positional subcommand in an argparse usage (`usage: x [-h] {folds,loco} ...`)."""
    usage = help_out.split("\n\n", 1)[0]
    usage = re.sub(r"\[[^\[\]]*\]", "", re.sub(r"\[[^\[\]]*\]", "", usage))  # drop optional groups
    return {c for group in re.findall(r"\{([\w,-]+)\}", usage) for c in group.split(",")}


def has_flag(help_out: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_out) is not None


@pytest.fixture(scope="module")
def documented_flags():
    uses = [u for doc in doc_files() for u in flag_uses(rel(doc), doc.read_text(encoding="utf-8"))]
    tops = helps({u.command for u, _ in uses})
    wanted = set()
    for u, word in uses:
        ok, out = tops[u.command]
        if ok and word and word in subcommands(out):
            wanted.add(u.command + (word,))
    subs = helps(wanted)
    return uses, {**tops, **subs}


def test_documented_flags_exist(documented_flags):
    """Every flag the docs show for train.py, evaluate.py, a `python -m` command of ours or a bench script is in
    that command's --help (a subcommand's flags in the subcommand's --help)."""
    uses, outputs = documented_flags
    assert len(uses) > 50, f"only {len(uses)} documented flags found: is the extraction broken?"
    missing, failed = [], {}
    for u, word in uses:
        ok, out = outputs[u.command]
        if not ok:
            failed.setdefault(u.command, (out, []))[1].append(f"{u.file}:{u.line}")
            continue
        texts = [out]
        sub = u.command + (word,)
        if word and sub in outputs:
            if not outputs[sub][0]:
                failed.setdefault(sub, (outputs[sub][1], []))[1].append(f"{u.file}:{u.line}")
                continue
            texts.append(outputs[sub][1])
        if not any(has_flag(t, u.flag) for t in texts):
            shown = " ".join(("python",) + (sub if len(texts) > 1 else u.command))
            missing.append(f"{u.file}:{u.line}: {shown}: {u.flag}")
    problems = [f"{' '.join(('python',) + cmd)} --help failed ({why}); documented at {', '.join(sorted(set(where))[:5])}"
                for cmd, (why, where) in sorted(failed.items())]
    problems += sorted(set(missing), key=lambda s: (s.split(":")[0], int(s.split(":")[1]), s))
    assert not problems, f"{len(problems)} documented flag problem(s):\n" + "\n".join(problems)


def test_flag_extraction_rules():
    """The attribution rules on a fixed text: continuations, `--` passed on to train.py, subcommands, prose,
    foreign programs."""
    text = "\n".join([
        "Run `python train.py --stage finetune` or `evaluate.py --audio X`; `--json` prints JSON.",  # 1
        "`--input card` (in `train.py`) and `python -m pytest -m \"not slow\" --lf`.",                  # 2
        "```bash",                                                                                      # 3
        "python -m exhubert_jax.protocol folds --folds demo-a --workdir runs/x \\",                       # 4
        "    -- --stage finetune --quiet",                                                              # 5
        "python -m converters.to_onnx CKPT OUT.onnx --embedding   # then --no-verify",                   # 6
        "pip install --upgrade pip",                                                                    # 7
        "# a comment with --steps but no command",                                                      # 8
        "```",                                                                                          # 9
        "`--copies 2` alone on a line",                                                                 # 10
    ])
    got = sorted((u.line, " ".join(u.command), u.flag, w or "") for u, w in flag_uses("x.md", text))
    assert got == sorted([
        (1, "train.py", "--stage", ""), (1, "evaluate.py", "--audio", ""), (1, "evaluate.py", "--json", ""),
        (2, "train.py", "--input", ""),
        (4, "-m exhubert_jax.protocol", "--folds", "folds"), (4, "-m exhubert_jax.protocol", "--workdir", "folds"),
        (4, "train.py", "--stage", ""), (4, "train.py", "--quiet", ""),
        (6, "-m converters.to_onnx", "--embedding", ""), (6, "-m converters.to_onnx", "--no-verify", ""),
    ]), got
    assert links("[a](docs/x.md#y) ![b](img.png) `[c](not-a-link.md)` [d](https://e.org)\n[r]: ref.md") == sorted([
        (1, "docs/x.md#y"), (1, "img.png"), (1, "https://e.org"), (2, "ref.md")])
