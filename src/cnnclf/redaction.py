"""Secrets kept out of everything cnnclf writes or prints: masked(text) hides a password in a URL
(`scheme://user:PASSWORD@host`, with an unencoded `@` in it too), a `password=`, `token=` or
`secret=` value (a query string or a keyword list), and the value of any environment variable
whose name says it holds a secret. The recorded command line (env.json, run.lock), every log line
(the terminal and train.log) and every error line pass through it.
"""

import logging
import os
import re

MASK = "***"
# scheme://[user]:password@host: the password runs to the last '@' before the next space, so that an
# unencoded '@' in it is not taken for the host's start (masking too much beats showing a tail)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@?#]*:)[^\s]*@")
_KEYWORD = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd|pass|secret|token|access_token|api_?key)\s*=\s*)[^&\s#;]*?(?=[&\s#;]|:\s|:?$)",
    re.IGNORECASE,
)
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|API_?KEY|CREDENTIAL", re.IGNORECASE)
_SHORTEST = 4  # environment values shorter than this are not searched for (they would mask ordinary words)


def masked(text: str) -> str:
    """`text` with every password, token and secret environment value in it replaced by ***."""
    text = _forms_masked(str(text))
    for value in _secret_values():
        text = text.replace(value, MASK)
    return text


def holds_password(text: str) -> bool:
    """Whether `text` carries a password or token in one of the forms a URL can (userinfo, query)."""
    return _forms_masked(text) != text


def _forms_masked(text: str) -> str:
    text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _KEYWORD.sub(lambda m: f"{m['head']}{MASK}", text)


def masked_argv(argv: list[str]) -> list[str]:
    """A command line as it may be recorded: each argument masked, and the one after an option named
    like a secret (--password VALUE) hidden whole."""
    out: list[str] = []
    for arg in argv:
        secret_option = bool(out) and out[-1].startswith("-") and "=" not in out[-1] and _SECRET_NAME.search(out[-1])
        out.append(MASK if secret_option else masked(arg))
    return out


def _secret_values() -> list[str]:
    values = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= _SHORTEST}
    return sorted(values, key=len, reverse=True)  # a longer value first: one may contain another


class LogFilter(logging.Filter):
    """Every record of the logger it is added to, masked before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = masked(record.getMessage()), ()
        return True
