"""The one check of a rules file and its templates, and the one answer to "which
template folders does a rule use": shared by `flowbot rules check`, `flowbot run`
(start-up and every reload), the daemon's file watcher and rendering.

Template folders, most specific first (render falls through them file by file):

    rule's own `template:` folder  →  `templates:` of rules.yaml (else $FLOWBOT_TEMPLATES)
    →  the defaults shipped in flowbot/templates
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flowbot.errors import ConfigError

if TYPE_CHECKING:
    from flowbot.rules import RuleSet


def templates_dir(ruleset: RuleSet, env_templates: str | None) -> Path | None:
    """The folder overriding the default templates: rules.yaml's `templates:`, else
    $FLOWBOT_TEMPLATES (`Settings.templates`), else None (the defaults)."""
    if ruleset.templates:
        return Path(ruleset.templates)
    return Path(env_templates) if env_templates else None


def rule_folders(ruleset: RuleSet) -> list[Path]:
    """The per-rule `template:` folders, each once."""
    return sorted({Path(r.template) for r in ruleset.rules if r.template}, key=str)


def template_folders(ruleset: RuleSet, env_templates: str | None) -> list[Path]:
    """Every folder of templates the rules use besides the defaults (for the watcher)."""
    override = templates_dir(ruleset, env_templates)
    return ([override] if override else []) + rule_folders(ruleset)


def template_problems(ruleset: RuleSet, env_templates: str | None) -> list[str]:
    """Every problem of the user's templates as rendering will see them: the override
    folder and each rule's folder (over the others). The defaults shipped in
    flowbot/templates are not trial-rendered here: they are the same for every user and
    tests/test_render.py checks them, so a rules file without templates of its own is
    checked without importing the template engine at all."""
    override = templates_dir(ruleset, env_templates)
    folders = rule_folders(ruleset)
    if override is None and not folders:
        return []
    from flowbot.render import check_templates

    problems = check_templates(override) if override is not None else []
    for folder in folders:
        problems += check_templates(override, folder)
    return problems


def check_templates(ruleset: RuleSet, env_templates: str | None) -> None:
    """Raise ConfigError listing every template problem (none: returns)."""
    problems = template_problems(ruleset, env_templates)
    if problems:
        raise ConfigError(f"{len(problems)} template problem(s): {problems[0]}", problems)


def validate(path: str | Path, env_templates: str | None) -> RuleSet:
    """Load the rules at `path` and check every template they use. Raises ConfigError
    listing every problem; the same words for `rules check`, start-up and reload."""
    from flowbot.rules import load_rules

    ruleset = load_rules(path)
    check_templates(ruleset, env_templates)
    return ruleset
