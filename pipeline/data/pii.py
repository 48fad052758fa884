"""KVKK: Turkish personal data in free text -> placeholder tokens, counted per kind.

- `tckn`: TC kimlik numarası, 11 digits, masked only when both check digits hold.
- `iban`: Turkish IBAN (`TR` + 24 digits, usually in groups of four), masked only when mod-97 holds.
- `phone`: Turkish mobile and landline numbers as people write them: `+90 532 123 45 67`,
  `0 (532) 123 45 67`, `(0532) 123-45-67`, `05321234567`, `0212 345 67 89`, `532 123 45 67` ...
- `email`: e-mail addresses.

A number that only looks like an ID (wrong checksum) is left alone: masking it would destroy data
(prices, lot numbers, parcel numbers) and teach the model that every 11-digit number is a secret.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable

from pipeline.config import PII_PLACEHOLDERS

EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]+@(?:[\w-]+\.)+[A-Za-z]{2,24}(?![\w-])")
IBAN_RE = re.compile(r"(?<![\w])TR[ ]?\d{2}(?:[ -]?\d{4}){5}[ -]?\d{2}(?!\d)", re.IGNORECASE)
TCKN_RE = re.compile(r"(?<![\d.,])[1-9]\d{10}(?![\d])")
_SEP = r"[ .\-]?"
_TAIL = rf"\d{{3}}{_SEP}\d{{2}}{_SEP}\d{{2}}"
_CODE = r"[2-58]\d{2}"  # 2xx-4xx landline areas, 5xx mobiles, 850 / 800 / 888 non-geographic
PHONE_RE = re.compile(
    r"(?<![\w+])(?:"
    rf"(?:\+|00)[ ]?90{_SEP}\(?0?{_CODE}\)?{_SEP}{_TAIL}"  # +90 532 123 45 67, 0090 (532) ...
    rf"|\(0?{_CODE}\){_SEP}{_TAIL}"  # (0532) 123 45 67, (532) 123 45 67
    rf"|0{_SEP}\(?{_CODE}\)?{_SEP}{_TAIL}"  # 0532 123 45 67, 0 (532) 123-45-67, 05321234567
    rf"|5\d{{2}}[ .\-]\d{{3}}[ .\-]\d{{2}}[ .\-]\d{{2}}"  # 532 123 45 67 (grouped, no prefix)
    r")(?!\d)"
)
KINDS = ("email", "iban", "tckn", "phone")  # the order they are applied in: e-mails and IBANs hold digits
PLACEHOLDERS = PII_PLACEHOLDERS


def tckn_valid(digits: str) -> bool:
    """The two check digits of a TC kimlik numarası."""
    if len(digits) != 11 or not digits.isdigit() or digits[0] == "0":
        return False
    d = [int(c) for c in digits]
    tenth = ((d[0] + d[2] + d[4] + d[6] + d[8]) * 7 - (d[1] + d[3] + d[5] + d[7])) % 10
    return d[9] == tenth and d[10] == sum(d[:10]) % 10


def iban_valid(text: str) -> bool:
    """ISO 13616 mod-97 check of a Turkish IBAN (26 characters without separators)."""
    iban = re.sub(r"[ -]", "", text).upper()
    if len(iban) != 26 or not iban.startswith("TR") or not iban[2:].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


_VALIDATORS: dict[str, Callable[[str], bool]] = {"tckn": tckn_valid, "iban": iban_valid}
_PATTERNS = {"email": EMAIL_RE, "iban": IBAN_RE, "tckn": TCKN_RE, "phone": PHONE_RE}
_HAS_DIGITS = re.compile(r"\d[\d .\-()]{6}")  # 7+ digits and separators: the shortest number masked


class PiiMasker:
    """Masks the configured kinds in order; `counts` holds what was masked, per kind."""

    def __init__(self, kinds: tuple[str, ...] | list[str] = KINDS, placeholders: dict[str, str] | None = None):
        self.kinds = [kind for kind in KINDS if kind in kinds]
        self.placeholders = PLACEHOLDERS | dict(placeholders or {})
        self.counts: Counter = Counter()

    def _replace(self, kind: str, text: str) -> str:
        validate = _VALIDATORS.get(kind)
        placeholder = self.placeholders[kind]

        def substitute(match: re.Match) -> str:
            if validate and not validate(match.group()):
                return match.group()
            self.counts[kind] += 1
            return placeholder

        return _PATTERNS[kind].sub(substitute, text)

    def mask(self, text: str) -> str:
        has_digits = _HAS_DIGITS.search(text) is not None
        for kind in self.kinds:
            if kind == "email":
                if "@" in text:
                    text = self._replace(kind, text)
            elif has_digits:
                text = self._replace(kind, text)
        return text
