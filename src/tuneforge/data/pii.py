"""Regex PII redaction: e-mails, IBANs, payment card numbers (Luhn-checked) and phone numbers."""

from __future__ import annotations

import re
from collections import Counter

EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
PHONE = re.compile(r"(?<![\w+])\+?\d{1,3}[ .-]?(?:\(?\d{1,4}\)?[ .-]?){2,4}\d{2,4}\b")


_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")


def _phone_ok(candidate: str) -> bool:
    """7 to 15 digits (E.164's maximum) and not starting like a date (2024-05-01, 01/05/2024)."""
    digits = sum(c.isdigit() for c in candidate)
    return 7 <= digits <= 15 and not _DATE.match(candidate.strip())  # match: also "2024-05-01 12:30"


def _luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def redact(text: str, counts: Counter[str] | None = None) -> str:
    """Replace PII with typed placeholders ([EMAIL], [IBAN], [CARD], [PHONE]); count what was replaced."""
    counts = counts if counts is not None else Counter()

    def sub(pattern: re.Pattern[str], tag: str, value: str, check: object = None) -> str:
        def repl(m: re.Match[str]) -> str:
            if check is not None and not check(m.group(0)):  # type: ignore[operator]
                return m.group(0)
            counts[tag] += 1
            return f"[{tag}]"

        return pattern.sub(repl, value)

    text = sub(EMAIL, "EMAIL", text)
    text = sub(IBAN, "IBAN", text)
    text = sub(CARD, "CARD", text, _luhn_ok)
    text = sub(PHONE, "PHONE", text, _phone_ok)
    return text
