from typing import Optional

from ecdsa import SigningKey, VerifyingKey

class Keypair:
    private: Optional[SigningKey]
    public: VerifyingKey
    vkc: bytes
    def __init__(self, priv: Optional[SigningKey] = ..., pub: Optional[VerifyingKey] = ...) -> None: ...
    @staticmethod
    def generate() -> "Keypair": ...
    def secret_bytes(self) -> bytes: ...
