"""MkDocs hook: links in the notebooks that point into the repository work on the site too.

A notebook's Markdown links are written for a code host and Jupyter, relative to ``notebooks/``
(``../docs/results.md``). On the site the notebooks are pages under ``notebooks/`` of the docs:
a link into ``docs/`` becomes a link to that page, any other file of the repository a link to
it on GitHub (``repo_url``).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

HREF = re.compile(r'href="(?!https?:|mailto:|#|/)([^"#]+)(#[^"]*)?"')


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Rewrite relative links of notebook pages (``notebooks/*.ipynb``) that leave the folder."""
    if not page.file.src_uri.startswith("notebooks/") or not page.file.src_uri.endswith(".ipynb"):
        return html

    def fix(match: re.Match[str]) -> str:
        href, anchor = match[1], match[2] or ""
        path = posixpath.normpath(posixpath.join("notebooks", href))  # repository-relative
        if path.startswith("notebooks/") or path.startswith(".."):
            return match[0]  # another notebook (resolved by mkdocs-jupyter) or outside the repo
        if path.startswith("docs/"):
            target = files.get_file_from_path(path.removeprefix("docs/"))
            if target is not None:
                return f'href="{target.url_relative_to(page.file)}{anchor}"'
        repo = config["repo_url"].rstrip("/")
        return f'href="{repo}/blob/main/{path}{anchor}"'

    return HREF.sub(fix, html)
