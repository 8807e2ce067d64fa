"""What every part of clipsearch stands on, with no image, model or database in it:
the errors a person sees as one line (errors), settings declared once (config), files
replaced whole or not at all (files), small JSON memos (memo), sizes as people write them
(sizes), what native code prints kept off the terminal (stderr), typical queries
(prompts), how many cores are free now (cpu), and the fault-injection points the tests
use (faults)."""
