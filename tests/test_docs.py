"""The commands the documentation shows still parse, and the weights they name are shipped.

Every ``ferkit VERB ...`` command in README.md, docs/**/*.md, examples/README.md and the shipped
cards is parsed by the real command line (``ferkit.cli.build_parser``): a renamed or removed
option, a bad choice or a missing required argument fails here instead of in a reader's
terminal. Weights named by a plain name (no folder, no file suffix) must be shipped (or an
alias): a renamed file fails here too. Paths (``runs/...``, ``out/...``) are not checked: those
are the reader's files.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from ferkit import weights
from ferkit.cli import build_parser
from ferkit.models import list_models

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "examples" / "README.md"]
PLACEHOLDER = re.compile(r"\.\.\.|\[--|\|")  # "ferkit data ... --check", "[--resume]", "flip|tencrop"
#: options whose value names trained weights (an ensemble joins them with +; probe's --models with commas)
WEIGHT_OPTIONS = {"--init", "--teacher", "--models"}
WEIGHT_MODEL_VERBS = {"evaluate", "predict", "serve", "export", "explain", "au-analysis", "recalibrate"}  # --model = weights


def _commands(text: str) -> list[tuple[str, bool]]:
    """The ferkit commands of one Markdown text, each with ``whole``: True for the lines of code
    blocks (fenced or indented; backslash continuations joined; shell comments, pipes and
    redirections dropped), a command to copy and run as it is; False for inline code spans in
    prose that give more than the verb ("`ferkit data --check`" names an option of a command
    whose other arguments the text leaves out; "`ferkit train`" only names the verb: skipped)."""
    lines: list[str] = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M):
        lines += block.replace("\\\n", " ").splitlines()
    for block in re.findall(r"^(?: {4}.*\n?)+", text, re.M):
        lines += re.sub(r"\\\n {4}", " ", block).splitlines()
    spans = re.findall(r"`((?:\S*/)?ferkit [^`\n]*)`", text)
    out = []
    for line, whole in [(x, True) for x in lines] + [(x, False) for x in spans]:
        m = re.match(r"(?:\$ |nohup |time )?((?:\S*/)?ferkit [a-z].*)$", line.strip())
        if m is None:
            continue
        cmd = " ".join(re.split(r" \| | && | ; | > | 2>|  +#", m.group(1))[0].split())
        if not PLACEHOLDER.search(cmd) and (whole or len(cmd.split()) > 2):
            out.append((cmd, whole))
    return out


def _documented() -> list[tuple[str, str, bool]]:
    found = {(p.relative_to(ROOT).as_posix(), c, whole) for p in DOCS for c, whole in _commands(p.read_text())}
    for card in weights.shipped():  # each card's training command, to be run as it is
        found.add((f"card {card['name']}", card["training"]["command"], True))
    return sorted(found)


DOCUMENTED = _documented()


def _parse(argv: list[str], fill: bool) -> str | None:
    """argparse's complaint about ``argv``, or None. ``fill``: a prose mention, whose required
    arguments the text leaves out: a stand-in is given for each, so that its own options are
    still checked."""
    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
        return None
    except SystemExit as e:
        if not e.code:
            return None  # --help
    complaint = err.getvalue().strip().splitlines()[-1]
    complaint = re.sub(r" \(`[^`]*--help` lists the options\)$", "", complaint)  # (ferkit's pointer to --help)
    missing = re.search(r"the following arguments are required: (.*)", complaint)
    if not fill or missing is None:
        return complaint
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[argv[0]]
    extra: list[str] = []
    for name in missing.group(1).split(", "):
        action = next(a for a in sub._actions if name in a.option_strings or name in (a.metavar, a.dest))
        value = str(action.choices[0]) if action.choices else "x"
        extra += [name, value] if action.option_strings else [value]
    return _parse(argv + extra, fill=False)


def test_the_docs_show_many_commands():
    # the extraction itself: it finds the commands a reader copies (not a handful by accident)
    assert len(DOCUMENTED) > 150 and sum(whole for _, _, whole in DOCUMENTED) > 50
    assert {shlex.split(c)[1] for _, c, _ in DOCUMENTED} >= {
        "predict", "train", "evaluate", "crossval", "crossval-eval", "probe", "export", "serve", "explain",
        "au-analysis", "data", "models"}


def test_extraction_joins_continuations_and_drops_comments_and_placeholders():
    text = ("Run `ferkit predict a.jpg --out out/`, see `ferkit train` and `ferkit data --check`.\n\n"
            "```bash\nferkit evaluate --model default \\\n  --dataset fer2013 --data D --split PrivateTest  # c\n"
            "ferkit data ... --check\n```\n\n    ferkit models --json | head\n    src/   ferkit and more\n")
    assert _commands(text) == [
        ("ferkit evaluate --model default --dataset fer2013 --data D --split PrivateTest", True),
        ("ferkit models --json", True), ("ferkit predict a.jpg --out out/", False),
        ("ferkit data --check", False)]
    assert _parse(["data", "--check"], fill=False) == (
        "ferkit data: error: the following arguments are required: --dataset, --data")
    assert _parse(["data", "--check"], fill=True) is None
    assert "unrecognized arguments: --chek" in _parse(["data", "--chek"], fill=True)
    assert "invalid choice: 'tflite'" in _parse(["predict", "--backend", "tflite"], fill=True)


@pytest.mark.parametrize(("where", "command", "whole"), DOCUMENTED,
                         ids=[f"{w}: {c[:60]}" for w, c, _ in DOCUMENTED])
def test_a_documented_command_parses_and_names_shipped_weights(where, command, whole):
    argv = shlex.split(command)[1:]
    complaint = _parse(argv, fill=not whole)
    assert complaint is None, f"{where}: `{command}` does not parse: {complaint}"
    architectures = {s.name for s in list_models()}
    known = {c["name"] for c in weights.shipped()} | set(weights.ALIASES)
    for opt, value in zip(argv, argv[1:]):
        if opt in WEIGHT_OPTIONS or (opt == "--model" and argv[0] in WEIGHT_MODEL_VERBS):
            for name in re.split(r"[+,]", value):
                if "/" not in name and not Path(name).suffix and not name.isupper():  # (A+B: placeholders)
                    assert name in known, f"{where}: `{command}`: no shipped weights {name!r}"
        elif opt == "--model":
            assert value in architectures, f"{where}: `{command}`: no architecture {value!r}"


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped (not - or _), spaces
    as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_of_the_docs_leads_somewhere():
    # a moved section or a renamed file leaves no dead link: each relative link names a file that
    # exists, and its #anchor a heading of that file
    link = re.compile(r"\]\(([^)\s]+)\)")
    bad = []
    for doc in DOCS:
        for target in link.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                bad.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md":
                heads = {_slug(m) for m in re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), re.M)}
                if anchor not in heads:
                    bad.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not bad, "\n".join(bad)
    assert _slug("Trained on a GPU: `vgg_fer`") == "trained-on-a-gpu-vgg_fer"
