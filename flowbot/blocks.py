"""Rendered Slack text → Block Kit, within Slack's limits. Pure text; no jinja2 here.

Structure comes only from the template's own line markers: "# text" a header, "---" a
divider, "[context] text" a context line, blank-line separated paragraphs sections.
Values from the API cannot make a marker: they arrive on one line (context.py) and
`guard_markers` defuses one that starts like a marker. Cuts (150 characters a header,
3,000 a section) never split an `&amp;` entity, a `<url|label>` link, a code span or a
character; a message never passes 50 blocks and keeps its trailing context (the footer).
"""

from __future__ import annotations

from typing import Any

from flowbot.untrusted import cut, width

SLACK_BLOCKS = 50
SLACK_SECTION = 3000
SLACK_HEADER = 150
FOOTER_BLOCKS = 2  # trailing context blocks kept when a message is cut to SLACK_BLOCKS
ZWSP = "\u200b"


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters as entities: `<!channel>` shows, never pings."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def guard_markers(text: str) -> str:
    """`text` (a value inserted into a template) made unable to start a header, a divider
    or a context line: a zero-width space goes in front of a leading marker."""
    head = text.lstrip()
    if head.startswith(("#", "[context]")) or (head and set(head.rstrip()) == {"-"}):
        return ZWSP + text
    return text


def _safe_end(head: str) -> str:
    """`head` shortened so that it does not end inside an entity, a link or a code span."""
    while True:
        amp, lt = head.rfind("&"), head.rfind("<")
        if amp >= 0 and ";" not in head[amp:]:
            head = head[:amp]
        elif lt >= 0 and ">" not in head[lt:]:
            head = head[:lt]
        elif head.count("`") % 2:
            head = head[: head.rindex("`")]
        else:
            return head


def cut_mrkdwn(text: str, limit: int, marker: str = "…") -> str:
    """`text` in at most `limit` UTF-16 units, cut where no entity, link, code span or
    character is split."""
    short = cut(text, limit, marker)
    if short == text:
        return text
    return _safe_end(short[: len(short) - len(marker)]).rstrip() + marker


def slack_blocks(text: str) -> dict[str, Any]:
    """Rendered Slack text → {"text": fallback, "blocks": [...]} within Slack's limits."""
    blocks: list[dict[str, Any]] = []
    paragraph: list[str] = []

    def flush() -> None:
        for section in _split_lines(paragraph, SLACK_SECTION):
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": section}})
        paragraph.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("# "):
            flush()
            header = cut_mrkdwn(line[2:].strip(), SLACK_HEADER)
            blocks.append({"type": "header", "text": {"type": "plain_text", "text": header}})
        elif stripped == "---":
            flush()
            blocks.append({"type": "divider"})
        elif line.startswith("[context]"):
            flush()
            note = cut_mrkdwn(line[len("[context]") :].strip(), SLACK_SECTION)
            if note:
                blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
        elif not stripped:
            flush()
        else:
            paragraph.append(line.rstrip())
    flush()
    blocks = _within_block_limit(blocks)
    return {"text": _fallback_text(blocks), "blocks": blocks}


def _within_block_limit(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most SLACK_BLOCKS blocks: the first ones, a note of how many were left out,
    and the trailing context blocks (the footer)."""
    if len(blocks) <= SLACK_BLOCKS:
        return blocks
    footer: list[dict[str, Any]] = []
    while blocks[-1]["type"] == "context" and len(footer) < FOOTER_BLOCKS:
        footer.insert(0, blocks.pop())
    keep = SLACK_BLOCKS - 1 - len(footer)
    note = f"and {len(blocks) - keep} more blocks not shown"
    more = {"type": "context", "elements": [{"type": "mrkdwn", "text": note}]}
    return [*blocks[:keep], more, *footer]


def _split_lines(lines: list[str], limit: int) -> list[str]:
    """Lines → texts of at most `limit` characters, split between lines (a line
    longer than `limit` alone is cut)."""
    out: list[str] = []
    current = ""
    for line in lines:
        line = cut_mrkdwn(line, limit)
        if current and width(current) + 1 + width(line) > limit:
            out.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        out.append(current)
    return out


def cut_lines(text: str, limit: int) -> str:
    """Cut at a line boundary when there is one, else where cut_mrkdwn may."""
    if width(text) <= limit:
        return text
    marker = "\n… (cut)"
    head = cut(text, limit - width(marker), marker="")
    if "\n" in head:
        return head[: head.rindex("\n")] + marker
    return cut_mrkdwn(text, limit, marker)


def _fallback_text(blocks: list[dict[str, Any]]) -> str:
    """The notification text: the header, or else the first section."""
    for block in blocks:
        if block["type"] in ("header", "section"):
            return cut_mrkdwn(block["text"]["text"], 300)
    return "flowbot alert"
