from typing import Any, Awaitable, Callable, Dict, List, Optional, Union

Handler = Callable[[bytes, bytes, str, None], Optional[Awaitable[None]]]

class Router:
    kp: Any
    get_time: Callable[[], float]
    nic: Any
    servers: Any
    msg_handlers: List[Handler]
    cache: Dict[str, Any]
    def __init__(
        self,
        kp: Any,
        msg_handler: Optional[Handler] = ...,
        get_time: Optional[Callable[[], float]] = ...,
        nic: Any = ...,
        servers: Any = ...,
    ) -> None: ...
    @property
    def public_key(self) -> bytes: ...
    def add_msg_handler(self, handler: Handler) -> None: ...
    async def start(self) -> list: ...
    async def close(self) -> None: ...
    async def pipe(
        self,
        dest_pub_hex: str,
        use_cache: bool = ...,
        expiry: float = ...,
        hint_brokers: Optional[List[Dict[str, Any]]] = ...,
    ) -> "SmartPipe": ...
    async def __aenter__(self) -> "Router": ...
    async def __aexit__(self, *exc: Any) -> None: ...

class SmartPipe:
    router: Router
    dest_pub_hex: str
    hint_brokers: Optional[List[Dict[str, Any]]]
    clients: list
    async def connect(self, msg_cb: Optional[Handler] = ...) -> "SmartPipe": ...
    async def send(self, msg: Union[bytes, str], timeout: float = ...) -> int: ...
    async def close(self) -> None: ...
