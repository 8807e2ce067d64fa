"""Image files and the data files that name them: which files are images (formats), an
item's key and bytes, whether a file, a tar shard's member or a URL (items), decoding to
RGB as a person sees it (decode), CLIP's pixels (pixels), tar shards (shards) and list or
caption tables (records). No torch."""
