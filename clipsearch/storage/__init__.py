"""A store on disk: the catalog, the source of truth (catalog, with its parts
catalog_files, catalog_models, catalog_vectors, catalog_indexes, over database and
schema), the FAISS vector indexes derived from it (vector_indexes, with presets,
loaded_index, index_files, tuning, recall, exact), the query log that tunes them
(query_log), and the folder with its writer lock (store). synthetic makes stores of
vectors no image made, for tests and benchmarks. No torch."""
