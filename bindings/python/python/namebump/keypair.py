"""secp256k1 keypairs, as python-ecdsa objects (namebump 0.0.16 ``keypair``)."""

from ecdsa import SECP256k1, SigningKey


class Keypair:
    """An ECDSA secp256k1 keypair: the owner identity of names.

    Attributes:
        private: an ``ecdsa.SigningKey``, or None for a verify-only pair.
        public: an ``ecdsa.VerifyingKey``.
        vkc: the 33-byte compressed public key (the owner on the wire).
    """

    def __init__(self, priv=None, pub=None):
        if priv is None and pub is None:
            raise ValueError("Keypair requires at least one of priv or pub")
        self.private = priv
        self.public = pub if pub is not None else priv.get_verifying_key()
        self.vkc = self.public.to_string("compressed")

    @staticmethod
    def generate():
        """A new random secp256k1 keypair (python-ecdsa's default hash, SHA-1)."""
        priv = SigningKey.generate(curve=SECP256k1)
        return Keypair(priv, priv.get_verifying_key())

    def secret_bytes(self):
        """The 32-byte private scalar (Keyway addition); ValueError if verify-only."""
        if self.private is None:
            raise ValueError("this keypair has no private key (verify-only)")
        return self.private.to_string()
