"""Admin dashboard pages. (being written)"""

ROUTES: list[tuple] = []
