"""Admin JSON API (SPEC §4). (being written)"""

ROUTES: list[tuple] = []
