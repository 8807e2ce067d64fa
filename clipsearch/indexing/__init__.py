"""`clipsearch index`: walk the roots (scan, plan), reuse the vectors of moved and copied
files (reuse, content), decode in worker processes (pool, worker) while the model embeds
and a writer thread commits (pipeline, cores), or on Ray (ray_pipeline); the whole run is
indexer's. priority makes it yield to searches on the same machine. The decoding workers
import this package and never torch."""
