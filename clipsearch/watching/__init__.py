"""Keeping a store current by itself: what changes under the watched folders (changes),
and the runs of `index` that follow it, with the state the page shows (watcher)."""
