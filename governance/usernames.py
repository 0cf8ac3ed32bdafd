"""Usernames that cannot pass for another: no mixed scripts, no confusable skeleton (Unicode TR39).

`username_check` is the one rule; `governance.accounts.user_save` applies it to every user created
or renamed (the admin's user forms, `user_create`, service accounts), and the admin's user forms
call it to show the refusal on the field.

- A username mixing scripts (e.g. a Cyrillic `а` among Latin letters) is refused with
  `username_mixed_script` (400). Digits and `@.+-_` are script-neutral (Unicode's Common).
- A username whose TR39 skeleton equals another user's is refused with `username_confusable` (409):
  `аре` (all Cyrillic) while `ape` exists, or `bi11` while `bill` exists.

The data is Unicode's confusables.txt as `confusable-homoglyphs` ships it. That package keeps
each line (source → prototype) in both directions; every class of characters confusable with one
prototype is one connected group of that graph, so mapping each character to one member of its
group gives a skeleton with the same equalities as TR39's (`skeleton`).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Any

from confusable_homoglyphs import confusables
from django.contrib.auth import get_user_model

from core.actor import visible
from core.errors import Conflict, InvalidInput


@lru_cache(maxsize=1)
def _representatives() -> dict[str, str]:
    """Each confusable character → the one string standing for its whole class."""
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        root = node
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[node] != root:
            parent[node], node = root, parent[node]
        return root

    def bare(text: str) -> str:  # the package keeps some characters wrapped in direction marks
        return text.replace("\u200e", "").replace("\u200f", "") or text

    for key, others in confusables.confusables_data.items():
        for other in others:
            left, right = find(bare(key)), find(bare(other["c"]))
            if left != right:
                parent[left] = right
    groups: dict[str, list[str]] = {}
    for node in list(parent):
        groups.setdefault(find(node), []).append(node)
    mapping: dict[str, str] = {}
    for members in groups.values():
        # A prototype that is a sequence (`rn` for `m`) stands for its class; otherwise any fixed member does.
        sequences = sorted(member for member in members if len(member) > 1)
        representative = sequences[0] if sequences else min(members)
        for member in members:
            if len(member) == 1:
                mapping[member] = representative
    # A representative sequence is itself made of characters that have representatives.
    return {char: "".join(mapping.get(part, part) for part in rep) for char, rep in mapping.items()}


@lru_cache(maxsize=8192)
def skeleton(text: str) -> str:
    """The TR39 skeleton of `text`, up to the choice of each class's representative."""
    mapping = _representatives()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(mapping.get(char, char) for char in decomposed))


def username_check(username: str, *, exclude_pk: Any = None) -> None:
    """Refuse a username that mixes scripts or whose skeleton equals another user's."""
    if confusables.is_mixed_script(username):
        raise InvalidInput(f"The username '{visible(username)}' mixes scripts.", code="username_mixed_script",
                           extra={"field": "username", "username": visible(username)})
    wanted = skeleton(username)
    others = get_user_model()._default_manager.exclude(username=username)
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    for other in others.values_list("username", flat=True).iterator():
        if skeleton(other) == wanted:
            raise Conflict(f"The username '{visible(username)}' looks like the existing '{visible(other)}'.",
                           code="username_confusable",
                           extra={"field": "username", "username": visible(username), "looks_like": visible(other)})
