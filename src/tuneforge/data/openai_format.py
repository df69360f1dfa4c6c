"""OpenAI's fine-tuning file formats, read as tuneforge examples.

Chat lines (`{"messages": [...]}`) are already the sft task's `messages` format. DPO lines are
`{"input": {"messages": [...]}, "preferred_output": [{"role": "assistant", "content": ...}],
"non_preferred_output": [...]}`; `dpo_pair` turns one into the preference task's canonical example
(`prompt` messages, `chosen` and `rejected` answers), so a preference run trains on such a file as it is.
"""

from __future__ import annotations

from typing import Any

from tuneforge.tasks.base import RecordError

PREFERRED, NON_PREFERRED = "preferred_output", "non_preferred_output"
_PROMPT_ROLES = ("system", "developer", "user", "assistant")
_EXAMPLE = ('{"input": {"messages": [{"role": "user", "content": "Hi"}]}, "preferred_output": [{"role": '
            '"assistant", "content": "Hello!"}], "non_preferred_output": [{"role": "assistant", "content": '
            '"Go away"}]}')


def is_dpo_line(raw: dict[str, Any]) -> bool:
    """Whether a record is an OpenAI DPO line (it carries either of the two output fields)."""
    return PREFERRED in raw or NON_PREFERRED in raw


def _text(content: Any) -> str | None:
    """A message's text: a string, or OpenAI's list of {"type": "text", "text": ...} parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    return None


def _prompt(raw: dict[str, Any]) -> list[dict[str, str]]:
    inp = raw.get("input")
    messages = inp.get("messages") if isinstance(inp, dict) else None
    if not isinstance(messages, list) or not messages:
        raise RecordError("'input.messages' must be a non-empty list of {role, content} objects",
                          fix=f"each DPO line reads {_EXAMPLE}")
    out = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in _PROMPT_ROLES:
            raise RecordError(f"input.messages[{i}] has no valid role (got {role!r})",
                              fix=f"roles are {', '.join(_PROMPT_ROLES)}")
        text = _text(m.get("content"))
        if text is None or not text.strip():
            raise RecordError(f"input.messages[{i}] ({role}) has empty content", fix="fill it in or drop the turn")
        # OpenAI's "developer" role is the newer name of "system"; tuneforge's chat templates know "system".
        out.append({"role": "system" if role == "developer" else role, "content": text})
    return out


def _answer(raw: dict[str, Any], field: str) -> str:
    value = raw.get(field)
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        raise RecordError(f"'{field}' must be a list of exactly one assistant message",
                          fix=f'e.g. "{field}": [{{"role": "assistant", "content": "..."}}]')
    message = value[0]
    if message.get("role") != "assistant":
        raise RecordError(f"'{field}[0]' has role {message.get('role')!r}, not 'assistant'",
                          fix="the preferred and non-preferred outputs are assistant replies")
    text = _text(message.get("content"))
    if text is None or not text.strip():
        raise RecordError(f"'{field}[0]' has empty content", fix="give both outputs a non-empty reply")
    return text.strip()


def dpo_pair(raw: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI DPO line as the preference task's example, or RecordError naming the field and the fix."""
    prompt = _prompt(raw)
    chosen, rejected = _answer(raw, PREFERRED), _answer(raw, NON_PREFERRED)
    if chosen == rejected:
        raise RecordError("the preferred and non-preferred outputs are the same text",
                          fix="a pair must differ, or drop the line")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
