"""Each rule's conda environment (envs/*.yaml) holds what its `uvis` command imports (issue 14:
`pseudo_quality` ran in envs/core.yaml, which lacks faiss, so it failed under `--sdm conda`).

For every rule, the test finds its command in rules/*.smk, the command's handler function in
the CLI and the imports that handler makes; a fresh interpreter then runs those imports with
every installed third-party package that the rule's environment does not list blocked for
imports made by uvis modules (packages' own dependencies come with them).
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from uvis.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]

#: Import names of conda packages, where they differ from the package name.
IMPORT_NAMES = {
    "pillow": ["PIL"],
    "pyyaml": ["yaml"],
    "pytorch": ["torch"],
    "open-clip-torch": ["open_clip"],
    "faiss-cpu": ["faiss"],
    "matplotlib-base": ["matplotlib"],
}

#: Rules whose command is assembled in rules/common.smk: the subcommands they can run.
ASSEMBLED = {
    "frame_index": [("data", "index"), ("data", "extract")],
    "frames_from_video": [("data", "extract")],
}

#: The child interpreter: blocks imports by uvis modules of installed packages not in
#: ALLOWED, then runs each rule's imports and prints which failed.
CHILD = """
import importlib.machinery, json, sys

ALLOWED = set(json.loads(sys.argv[1]))
RULES = json.loads(sys.argv[2])


def importer():
    frame = sys._getframe(2)
    while frame is not None and "importlib" in frame.f_code.co_filename:
        frame = frame.f_back
    return "" if frame is None else frame.f_globals.get("__name__", "")


class Blocker:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if "." in name or top in ALLOWED or top in sys.stdlib_module_names or top == "uvis":
            return None
        spec = importlib.machinery.PathFinder.find_spec(top)
        where = "" if spec is None else str(spec.origin or spec.submodule_search_locations)
        caller = importer()
        if "-packages" in where and (caller.startswith("uvis") or caller == "__main__"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
failures = {}
for rule, code in RULES.items():
    try:
        exec(code, {"__name__": "__main__"})
    except ImportError as exc:
        failures[rule] = str(exc)
print(json.dumps(failures))
"""


def env_imports(env_file: Path) -> set[str]:
    """Import names of the packages an environment file lists."""
    names = set()
    for dep in yaml.safe_load(env_file.read_text())["dependencies"]:
        if isinstance(dep, str):
            package = re.split(r"[=<>! ]", dep)[0]
            names.update(IMPORT_NAMES.get(package, [package.replace("-", "_")]))
    return names


def rules_of(text: str) -> dict[str, tuple[str, str]]:
    """rule name -> (conda env file, shell command text) of a .smk file."""
    out = {}
    blocks = re.split(r"^\s*rule (\w+):\n", text, flags=re.M)
    for name, block in zip(blocks[1::2], blocks[2::2], strict=True):
        env = re.search(r'conda:\s*\n(?:\s*#.*\n)*\s*"([^"]+)"', block)
        shell = re.search(r"shell:\s*\n((?:\s+\".*\"\n?)+)", block)
        if env and shell:
            out[name] = (env.group(1), shell.group(1))
    return out


def subcommands(rule: str, shell: str) -> list[tuple[str, ...]]:
    if rule in ASSEMBLED:
        return ASSEMBLED[rule]
    match = re.search(r"uvis ([a-z-]+)(?: ([a-z-]+))?", shell)
    assert match, f"rule {rule}: no `uvis` command in {shell}"
    return [tuple(w for w in match.groups() if w)]


def handler(words: tuple[str, ...]):
    parser = build_parser()
    for word in words:
        actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not actions or word not in actions[0].choices:
            break
        parser = actions[0].choices[word]
    func = parser.get_default("func")
    assert func is not None, words
    return func


def handler_imports(func) -> str:
    """The handler's module import and the import statements of its body, as code."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    lines = [f"import {func.__module__}"]
    lines += [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    return "\n".join(lines)


def all_rules() -> dict[str, tuple[str, str]]:
    rules = {}
    for path in sorted((ROOT / "rules").glob("*.smk")):
        rules.update(rules_of(path.read_text()))
    return rules


def test_every_rule_with_a_command_is_found():
    rules = all_rules()
    assert {"pseudo_quality", "filter", "synth_world", "table", "train_vis", "strips"} <= set(rules)
    assert len(rules) >= 28


def test_each_rules_environment_holds_what_its_command_imports():
    by_env: dict[str, dict[str, str]] = {}
    for rule, (env, shell) in all_rules().items():
        for words in subcommands(rule, shell):
            key = f"{rule} ({'/'.join(words)})"
            by_env.setdefault(env, {})[key] = handler_imports(handler(words))
    assert set(by_env) >= {"../envs/core.yaml", "../envs/torch.yaml"}
    failures = {}
    for env, rules in by_env.items():
        allowed = sorted(env_imports(ROOT / "rules" / env))
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(allowed), json.dumps(rules)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        failures.update({f"{rule} in {env}": why for rule, why in json.loads(proc.stdout).items()})
    assert not failures


def test_the_check_finds_a_missing_package():
    """The check itself: `uvis pseudo quality` in envs/core.yaml (the rule's environment before
    issue 14) needs faiss, which core.yaml lacks; with faiss allowed it passes."""
    rules = {"pseudo_quality": handler_imports(handler(("pseudo", "quality")))}
    core = sorted(env_imports(ROOT / "envs" / "core.yaml"))
    for allowed, expected in (
        (core, {"pseudo_quality": "No module named 'faiss' (blocked)"}),
        ([*core, "faiss"], {}),
    ):
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(allowed), json.dumps(rules)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert json.loads(proc.stdout) == expected, proc.stderr
