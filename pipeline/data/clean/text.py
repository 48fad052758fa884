"""Text fixes applied to every free-text field, in this order: mojibake repair, HTML tags and entities,
Unicode normal form, control and zero-width characters, whitespace. Each takes and returns one string;
each has a fast path for the common clean text, because it runs on every field of every row."""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass


# UTF-8 read as cp1252/Latin-1 shows a lead byte (Â..ô) followed by a continuation byte
# (U+0080..U+00BF, or what cp1252 makes of 0x80..0x9F); ftfy is only asked when that pattern or
# a C1 control appears, because it is slow (~150 µs) even on clean text.
_CP1252_HIGH = "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ"
_MOJIBAKE_HINT = re.compile(f"[\u00c2-\u00f4][\u0080-\u00bf{_CP1252_HIGH}]|[\u0080-\u009f]|[ÂÃ] ")
# One character class is scanned far faster than the pattern above: the lead bytes Â Ã Ä Å (all of
# Turkish and Western mojibake), C1 controls, `â€` (3-byte sequences) and the cp1254 letters.
_MOJIBAKE_QUICK = re.compile("[\u0080-\u009f\u00c2-\u00c5\u00d0\u00dd\u00de\u00f0\u00fd\u00fe\u20ac\u2122\u0153\u0178]")
# What ftfy leaves (it wants more evidence than one `ÄŸ` in `BuÄŸday`): each lead+continuation run
# that re-encodes to valid UTF-8 and gives a Latin letter, punctuation or a symbol is decoded back.
_CONTINUATION = f"[\u0080-\u00bf{_CP1252_HIGH}]"
_UTF8_RUN = re.compile(f"[\u00c2-\u00df]{_CONTINUATION}|[\u00e0-\u00ef]{_CONTINUATION}{{2}}"
                       f"|[\u00f0-\u00f4]{_CONTINUATION}{{3}}")
_CP1252_BYTE = {ch: bytes([0x80 + i]) for i, ch in enumerate("€\x81‚ƒ„…†‡ˆ‰Š‹Œ\x8dŽ\x8f\x90‘’“”•–—˜™š›œ\x9džŸ")}
# Windows-1254 read as Latin-1/cp1252: Ğ İ Ş ğ ı ş arrive as Ð Ý Þ ð ý þ. Repaired only when the text
# holds none of the real Turkish-only letters (then it cannot be correctly decoded Turkish).
_CP1254_AS_LATIN = str.maketrans("ÐÝÞðýþ", "ĞİŞğış")
_CP1254_HINT = re.compile("[ÐÝÞðýþ]")
_TURKISH_ONLY_LETTERS = re.compile("[ğĞıİşŞ]")

_HTML_HINT = re.compile(r"<[A-Za-z/!]|&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_HTML_TAGS = ("a|abbr|address|article|aside|b|big|blockquote|body|br|button|caption|center|cite|code|col|colgroup|"
              "dd|del|details|div|dl|dt|em|figcaption|figure|font|footer|form|h[1-6]|head|header|hr|html|i|iframe|"
              "img|input|ins|kbd|label|li|link|main|mark|meta|nav|noscript|ol|option|p|pre|q|s|section|select|"
              "small|span|strike|strong|sub|summary|sup|table|tbody|td|tfoot|th|thead|time|title|tr|tt|u|ul|wbr")
_HTML_BLOCK = re.compile(r"<(script|style|head)\b[^>]*>.*?</\1\s*>|<!--.*?-->", re.S | re.I)
_HTML_BREAK = re.compile(r"<(?:br|/p|/div|/li|/tr|/h[1-6]|/blockquote|hr)\b[^<>]*>", re.I)
_HTML_TAG = re.compile(rf"</?(?:{_HTML_TAGS})(?:\s[^<>]*)?/?>|<!DOCTYPE[^<>]*>", re.I)

# C0/C1 controls (tab, newline, CR, VT, FF stay for the whitespace step), soft hyphen, zero-width
# and bidi formatting characters, BOM, interlinear annotation marks.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                      "\u2066-\u206f\ufeff\ufff9-\ufffb]")
_INLINE_SPACE_RE = re.compile("[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_LINE_BREAKS_RE = re.compile("\r\n|[\r\x0b\x0c\x85\u2028\u2029]")
_BLANK_LINES_RE = re.compile(r"\n{3,}")
_SPECIAL_SPACE = re.compile("[\t\n\r\x0b\x0c\x85\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


@dataclass
class _Ftfy:
    config: object = None

    def fix(self, text: str) -> str:
        import ftfy

        if self.config is None:
            self.config = ftfy.TextFixerConfig(unescape_html=False, remove_control_chars=False, uncurl_quotes=False,
                                               fix_line_breaks=False, fix_latin_ligatures=False,
                                               fix_character_width=False, normalization=None, explain=False)
        return ftfy.fix_text(text, self.config)


_FTFY = _Ftfy()


def _redecode(match: re.Match) -> str:
    run = match.group()
    try:
        decoded = b"".join(_CP1252_BYTE.get(ch) or bytes([ord(ch)]) for ch in run).decode("utf-8")
    except (UnicodeDecodeError, ValueError):
        return run
    category = unicodedata.category(decoded)
    latin_letter = category[0] == "L" and 0x00C0 <= ord(decoded) <= 0x017F
    return decoded if latin_letter or category[0] in "PS" else run


def fix_mojibake(text: str) -> str:
    """Undo double-decoded UTF-8 (`Ã¼` -> `ü`, `ÅŸ` -> `ş`) and cp1254-as-Latin-1 (`Þeker` -> `Şeker`).

    The common case (UTF-8 read once as cp1252/Latin-1) is undone sequence by sequence; ftfy gets
    what still looks broken after that (mixed or layered damage, C1 controls, lost NBSP bytes)."""
    if not _MOJIBAKE_QUICK.search(text):
        return text
    if _MOJIBAKE_HINT.search(text):
        if _UTF8_RUN.search(text):
            text = _UTF8_RUN.sub(_redecode, text)
        if _MOJIBAKE_HINT.search(text):
            text = _FTFY.fix(text)
    if _CP1254_HINT.search(text) and not _TURKISH_ONLY_LETTERS.search(text):
        text = text.translate(_CP1254_AS_LATIN)
    return text


def strip_html(text: str) -> str:
    """Drop tags (known HTML tag names only: `x < y > z` is left alone), scripts, styles, comments;
    block ends become line breaks; then decode entities."""
    if ("<" not in text and "&" not in text) or not _HTML_HINT.search(text):  # `in`: ~10x faster than the regex
        return text
    text = _HTML_BLOCK.sub("", text)
    text = _HTML_BREAK.sub("\n", text)
    text = _HTML_TAG.sub("", text)
    return html.unescape(text) if "&" in text else text


def normalise_unicode(text: str, form: str) -> str:
    if form == "none" or unicodedata.is_normalized(form, text):
        return text
    return unicodedata.normalize(form, text)


def remove_control_chars(text: str) -> str:
    # every character _CONTROL removes is non-printable: isprintable() is one C pass, 2x the regex's speed
    return text if text.isprintable() else _CONTROL.sub("", text)


def normalise_whitespace(text: str) -> str:
    """Trim each line, collapse runs of spaces/tabs, keep at most one blank line between paragraphs."""
    if ("  " not in text and not text.startswith(" ") and not text.endswith(" ")
            and (text.isprintable() or not _SPECIAL_SPACE.search(text))):  # special spaces are non-printable
        return text
    text = _LINE_BREAKS_RE.sub("\n", text)
    lines = [_INLINE_SPACE_RE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES_RE.sub("\n\n", "\n".join(lines)).strip()

