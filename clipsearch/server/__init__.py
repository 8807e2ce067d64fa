"""`clipsearch serve`: the Library behind a JSON API and a web page.

A second face of the same Library, as the command line is: this layer parses and checks
requests, the Library answers. One process keeps the text tower, the vector index and the
catalog warm; `clipsearch index` and `forget` stay separate processes whose commits the
Library picks up from the catalog's vector log on the next search. No request parameter
is ever a path. The parts: app (routers, errors), guard (hosts, origins, body sizes,
headers), auth (the key, sessions), api, files, body (uploads), service (the warm
Library), schemas, reference (/docs), listener (uvicorn); the page is in web/.
"""

from .app import create_app
from .guard import Exposure
from .listener import make_server
from .service import Service

__all__ = ["Exposure", "Service", "create_app", "make_server"]
