"""The members of the ensemble, one module each:

- ``s1``: fine-tuned self-supervised speech encoder + attentive statistics pooling (speech)
- ``s2``: SALMONN-style speech LLM, speech only (speech)
- ``st1``: the speech LLM of S2 given the speech and the transcript (speech + text)
- ``t1``: zero-shot LLM on the transcript (text)
- ``t2``: LoRA-tuned LLM used as a text encoder + attentive statistics pooling (text)
- ``egemaps``: openSMILE eGeMAPS functionals + a linear classifier or small MLP, the acoustic reference (speech)

``get_member(name)`` returns a member class; modules are imported on demand so
that a member's heavy dependencies load only when it is used.
"""

from __future__ import annotations

import importlib

from abhinaya.members.base import Member
from abhinaya.recipes import Recipe

# name -> "module:Class"
MEMBERS: dict[str, str] = {
    "s1": "abhinaya.members.s1:S1Member",
    "s2": "abhinaya.members.s2:S2Member",
    "st1": "abhinaya.members.st1:ST1Member",
    "t1": "abhinaya.members.t1:T1Member",
    "t2": "abhinaya.members.t2:T2Member",
    "egemaps": "abhinaya.members.egemaps:EgemapsMember",
}


def get_member(name: str) -> type[Member]:
    if name not in MEMBERS:
        raise ValueError(f"unknown member {name!r}; available: {', '.join(MEMBERS)}")
    module_name, class_name = MEMBERS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


__all__ = ["MEMBERS", "Member", "Recipe", "get_member"]
