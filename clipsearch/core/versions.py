"""Which clipsearch made each part of a catalog, by number. A newer one with a higher
number upgrades or reads again what an older one made; a settled run's note
(indexing/settled.py) holds only under the numbers it was left with."""

SCHEMA_HEAD = "0008"  # the newest migration: a database at it holds storage/schema.py's tables
EXIF_READ = 1  # this reading of EXIF (catalog column exif_read): 1 = with lens and place
TEXT_READ = 1  # this reading of text in images; a newer one (another engine, size) reads all again
