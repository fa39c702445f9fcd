"""Safe text for reports: the one way a user-controlled string reaches Markdown or HTML.

Model ids and folders, judge and CLIP specs, labels, prompts, tags and parameter values
can hold any character. A notebook never pastes them into Markdown itself; it writes

    display(md("Model {model!c}, judges {judges}: **{rate:.2f}**", model=model, judges=names, rate=r))

and :func:`md` escapes every value (the template, written by us, keeps its Markdown).
``!c`` shows a value as inline code. As a second line of defence the report exporter
cleans every rendered Markdown and HTML output with :func:`clean_html`, and the report
template allows no script at all (``sagekit.report``).
"""

from __future__ import annotations

import re
import string

# Characters that Markdown (CommonMark + the GFM tables, strikethrough and math that
# nbconvert enables) or HTML give a meaning to. Each is written as a numeric character
# reference: Markdown decodes it to the plain character, so it shows as text and never
# as markup, and it is inert in HTML.
_SPECIAL = frozenset("\\`*_{}[]()#+-.!|~<>&\"'$:=@%^")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def short(value, limit: int = 80) -> str:
    """``repr(value)``, cut in the middle past ``limit`` characters: an error echoes what it
    was given in one readable line, even a 5,000-character label."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit // 2]}…{text[-(limit // 2):]} ({len(text)} characters)"


def escape(value) -> str:
    """``str(value)`` as inert Markdown/HTML text: specials become ``&#N;`` and line breaks
    and other control characters a space (a value can't start a heading or a list)."""
    text = _CONTROL.sub(" ", str(value))
    return "".join(f"&#{ord(ch)};" if ch in _SPECIAL else ch for ch in text)


def code(value) -> str:
    """A value as inline code. Backticks would break on a value holding a backtick,
    so this is an HTML ``<code>`` element around the escaped text."""
    return f"<code>{escape(value)}</code>"


class Safe(str):
    """Markdown that :func:`md_text` produced: its values are escaped already, so it is
    inserted as it is when it is itself a value (to join pieces into one report text)."""


class _Code:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class _SafeFormatter(string.Formatter):
    """``str.format`` whose fields are escaped; conversion ``!c`` renders inline code."""

    def convert_field(self, value, conversion):
        if conversion == "c":
            return _Code(value)
        return super().convert_field(value, conversion)

    def format_field(self, value, format_spec):
        if isinstance(value, Safe) and not format_spec:
            return value
        if isinstance(value, _Code):
            return code(format(value.value, format_spec))
        return escape(format(value, format_spec))


_FORMATTER = _SafeFormatter()


def md_text(template: str, /, *args, **values) -> Safe:
    """``template.format(...)`` with every substituted value escaped (see module doc)."""
    return Safe(_FORMATTER.format(template, *args, **values))


def md(template: str, /, *args, **values):
    """An IPython ``Markdown`` object of :func:`md_text`: what notebooks ``display``."""
    from IPython.display import Markdown

    return Markdown(md_text(template, *args, **values))


def md_rows(template: str, rows):
    """One line of ``template`` per row (a dict of values), e.g. a bullet list."""
    from IPython.display import Markdown

    return Markdown("\n".join(md_text(template, **row) for row in rows))


# ---------------------------------------------------------------------------- sanitizer
# What rendered Markdown, pandas tables and nbconvert's own output wrappers use; anything
# else (script, iframe, object, form, event handlers, javascript: links) is escaped to text.
ALLOWED_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em", "h1", "h2",
    "h3", "h4", "h5", "h6", "hr", "i", "kbd", "li", "ol", "p", "pre", "s", "small", "span", "strong", "style",
    "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
})
ALLOWED_ATTRIBUTES = {
    "*": ["class", "id", "title"],
    "a": ["href", "title", "class", "id"],
    "table": ["border", "class", "id"],
    "td": ["colspan", "rowspan", "class"],
    "th": ["colspan", "rowspan", "class"],
    "style": ["scoped", "type"],
}
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto"})


def clean_html(html: str) -> str:
    """Rendered Markdown or an HTML output, with every tag, attribute and link protocol
    outside the allow-lists above escaped or dropped (bleach, as nbconvert's own
    sanitizer uses, with the tags a report needs: headings, paragraphs, tables)."""
    import bleach

    html = html.decode() if isinstance(html, bytes) else str(html)
    return bleach.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, protocols=ALLOWED_PROTOCOLS)


def display_name(model: str) -> str:
    """What charts call a model: a local folder by its last part (a full path crowds every
    legend), toy names and hub ids ``org/name`` as given."""
    from pathlib import Path

    path = Path(model).expanduser()
    return path.name if model.startswith(("/", ".", "~")) or (path.is_dir() and model.count("/") != 1) else model
