"""Each rule's conda environment (envs/*.yaml) holds what its `uvis` command imports (issue 14:
`pseudo_quality` ran in envs/core.yaml, which lacks faiss, so it failed under `--sdm conda`).

For every rule, the test finds its command in rules/*.smk, the command's handler function in
the CLI and the imports that handler makes (uvis.workflow.rules); a fresh interpreter then runs those imports with
every installed third-party package that the rule's environment does not list blocked for
imports made by uvis modules (packages' own dependencies come with them).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from uvis.workflow.rules import (
    command_handler,
    handler_import_code,
    main,
    rule_commands,
    rules_using,
)

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


def test_every_rule_with_a_command_is_found():
    rules = {r.rule: r for r in rule_commands(ROOT / "rules")}
    assert {"pseudo_quality", "filter", "synth_world", "table", "train_vis", "strips"} <= set(rules)
    assert len(rules) >= 30
    assert rules["train_vis"].subcommands == (("train", "vis"),)
    assert rules["synth_world"].subcommands == (("synth",),)
    assert rules["cutler_proposals"].env == "../envs/detectron2.yaml"
    assert all(r.env for r in rules.values())


def test_each_rules_environment_holds_what_its_command_imports():
    by_env: dict[str, dict[str, str]] = {}
    for rule in rule_commands(ROOT / "rules"):
        for words in rule.subcommands:
            key = f"{rule.rule} ({'/'.join(words)})"
            by_env.setdefault(rule.env, {})[key] = handler_import_code(command_handler(words))
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
    rules = {"pseudo_quality": handler_import_code(command_handler(("pseudo", "quality")))}
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


def test_rules_using_a_library_file():
    """Rules whose commands reach a module, by imports (the list `--forcerun` takes)."""
    rules_dir, src = ROOT / "rules", ROOT / "src"
    every = [r.rule for r in rule_commands(rules_dir)]
    assert rules_using([src / "uvis" / "io.py"], rules_dir, src) == every
    losses = rules_using([src / "uvis" / "tagvis" / "losses.py"], rules_dir, src)
    assert "train_tagvis" in losses and "eval_ytvis" not in losses and "filter" not in losses
    quality = rules_using([src / "uvis" / "pseudo" / "quality.py"], rules_dir, src)
    assert "pseudo_quality" in quality and "train_vis" not in quality
    compare = rules_using([src / "uvis" / "evaluation" / "compare.py"], rules_dir, src)
    assert {"compare_vis", "compare_tagvis"} <= set(compare) and "synth_world" not in compare


def test_rules_using_command_line(capsys, tmp_path):
    assert main([str(ROOT / "src" / "uvis" / "tagvis" / "losses.py")]) == 0
    assert "train_tagvis" in capsys.readouterr().out.split()
    outside = tmp_path / "x.py"
    outside.write_text("")
    assert main([str(outside)]) == 2
    assert "not a source file under" in capsys.readouterr().err
