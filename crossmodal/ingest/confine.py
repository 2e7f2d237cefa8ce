"""Which files a collection may read: those inside its roots, the folders and files it was
asked to index.

A root is recorded as a real path, so a symbolic link inside a root is followed only when its
target lies inside a root too (or when the user explicitly asks to follow links, which records
the target as a root of its own). An item list found while walking a folder may only name files
inside its own folder; a list given explicitly may name any file, and each file it names
becomes a root. The server applies the same test again when it sends a file, so a catalogued
file swapped for a link to elsewhere is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from crossmodal.items import Root


class Confinement:
    """The roots a run may read from, and the new ones it records."""

    def __init__(self, roots: Iterable[Root] = (), follow_symlinks: bool = False) -> None:
        self.roots: list[Root] = list(roots)
        self.follow_symlinks = follow_symlinks
        self.new_roots: list[Root] = []

    def allows(self, path: str | os.PathLike) -> bool:
        """Whether the real file behind ``path`` lies inside a root."""
        real = os.path.realpath(path)
        return any(root.contains(real) for root in self.roots)

    def add(self, path: str | os.PathLike, is_folder: bool) -> Root:
        """Record ``path`` (resolved) as a root, once."""
        root = Root(os.path.realpath(path), is_folder)
        if root not in self.roots:
            self.roots.append(root)
            self.new_roots.append(root)
        return root

    def admits_link(self, link: str) -> bool:
        """Whether a symbolic link met while walking may be followed: its target is inside a
        root, or links are followed on request (the target then becomes a root)."""
        if self.allows(link):
            return True
        if self.follow_symlinks:
            self.add(link, os.path.isdir(link))
            return True
        return False


def inside_folder(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether the real file behind ``path`` lies inside the real ``folder``."""
    return Root(os.path.realpath(folder), True).contains(os.path.realpath(path))
