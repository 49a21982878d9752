from .client import Client as Client, PutRejected as PutRejected, RequestRefused as RequestRefused
from .defs import DO_BUMP as DO_BUMP, DONT_BUMP as DONT_BUMP, THROW_BUMP as THROW_BUMP
from .keypair import Keypair as Keypair

__all__: list[str]
