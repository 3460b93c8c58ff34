"""Guards of a paged pass: a ``nextToken`` seen twice is a loop, not more data."""

from __future__ import annotations

from processors.amazon.errors import AmazonPaginationLoop


class TokenTrail:
    """The page tokens one pass of ``operation`` has followed (the one it resumed from
    included). ``follow`` returns the next token, or raises ``AmazonPaginationLoop`` when
    Amazon hands back one already followed: the pass would fetch the same pages for ever."""

    def __init__(self, operation: str, start: str | None = None) -> None:
        self.operation = operation
        self._seen = {start} if start else set()
        self.pages = 0

    def follow(self, token: str | None) -> str | None:
        self.pages += 1
        if token is None:
            return None
        if token in self._seen:
            raise AmazonPaginationLoop(self.operation, self.pages)
        self._seen.add(token)
        return token
