"""Markdown: ``#`` and underlined headings make the heading path; markup is dropped.

A line-based reader, not a full CommonMark parser: it needs only where the
headings are and the words a reader sees (link text, not link targets).
Fenced code is kept verbatim, and a ``#`` inside it is not a heading.
"""

from __future__ import annotations

import re

from chatmeter.knowledge.document import Document, PageBuilder

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")
_LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s+\S+")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:\s*(.+?)\s*$", re.MULTILINE)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)

_INLINE = (
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # image: its alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # link: its text
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # reference link
    (re.compile(r"<((?:https?|mailto):[^>\s]+)>"), r"\1"),  # autolink
    (re.compile(r"</?[A-Za-z][^>]*>"), ""),  # inline HTML tags
    # Strong: ``**`` not after a letter or digit (``10**2`` is a power); ``__`` only around
    # words with a space between them (``__init__`` and ``__path__`` are names).
    (re.compile(r"(?<![\w*])\*\*(?=\S)(.+?)(?<=\S)\*\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<!\w)__(?=\S)([^_]*?\s[^_]*?)(?<=\S)__(?!\w)"), r"\1"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?!\*)"), r"\1"),  # emphasis
    (re.compile(r"(?<!\w)_(?=[^\s_])(.+?)(?<=[^\s_])_(?!\w)"), r"\1"),  # emphasis, not snake_case
    (re.compile(r"~~(.+?)~~"), r"\1"),  # strikethrough
    (re.compile(r"^ {0,3}>[ \t]?", re.MULTILINE), ""),  # blockquote marker
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])"), r"\1"),  # backslash escapes
)


def looks_like_markdown(text: str) -> bool:
    """Two headings, or one heading with other Markdown: enough to read it as Markdown."""
    headings = fences = links = 0
    for line in text.splitlines():
        if _ATX.match(line) and line.lstrip("# \t"):
            headings += 1
        elif _FENCE.match(line):
            fences += 1
        elif re.search(r"\]\([^)\s]+\)", line):
            links += 1
    return headings >= 2 or (headings == 1 and (fences >= 2 or links >= 1))


def read_markdown(text: str, *, title: str) -> Document:
    text, front_title = _front_matter(text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _COMMENT.sub("", text)
    builder = PageBuilder()
    first_heading: str | None = None
    paragraph: list[str] = []
    fence: str | None = None

    def flush() -> None:
        if paragraph:
            builder.paragraph(_inline("\n".join(paragraph)))
            paragraph.clear()

    for line in text.split("\n"):
        if fence is not None:
            if line.strip().startswith(fence):
                builder.paragraph("\n".join(paragraph))  # code is kept as written
                paragraph.clear()
                fence = None
            else:
                paragraph.append(line)
            continue
        if opening := _FENCE.match(line):
            flush()
            fence = opening.group(1)[0] * 3
            continue
        if atx := _ATX.match(line):
            flush()
            heading = _inline(atx.group(2) or "")
            builder.heading(heading, level=len(atx.group(1)))
            first_heading = first_heading or heading
            continue
        if (setext := _SETEXT.match(line)) and paragraph:
            # The paragraph just read is the heading: "Title\n=====".
            heading = _inline(" ".join(paragraph))
            paragraph.clear()
            builder.heading(heading, level=1 if setext.group(1)[0] == "=" else 2)
            first_heading = first_heading or heading
            continue
        if not line.strip():
            flush()
        elif not (
            _THEMATIC_BREAK.match(line) or _TABLE_RULE.match(line) or _LINK_DEFINITION.match(line)
        ):
            paragraph.append(line)
    if fence is not None:  # an unclosed fence runs to the end, as CommonMark says
        builder.paragraph("\n".join(paragraph))
        paragraph.clear()
    flush()
    return Document(
        format="markdown", title=front_title or first_heading or title, pages=[builder.page()]
    )


def _front_matter(text: str) -> tuple[str, str | None]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return text, None
    title = _FRONT_MATTER_TITLE.search(match.group(1))
    return text[match.end() :], title.group(1).strip("\"'") if title else None


_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_KEPT = re.compile("\x00(\\d+)\x00")


def _inline(text: str) -> str:
    """The text without inline markup; code spans kept exactly as written (``**kwargs``)."""
    spans: list[str] = []

    def keep(match: re.Match[str]) -> str:
        spans.append(match[2].strip() or match[2])
        return f"\x00{len(spans) - 1}\x00"

    text = _CODE_SPAN.sub(keep, text.replace("\x00", ""))
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    return _KEPT.sub(lambda match: spans[int(match[1])], text)
