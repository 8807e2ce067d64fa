"""Answering queries: parsing terms and filters, exact filtered search (search), the
models that answer and the tower that reads the words (encoders, precision), the whole
answer with its caches (searcher), and results as tables, JSON and HTML (render)."""
