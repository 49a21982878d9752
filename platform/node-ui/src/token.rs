//! The one-time pairing token the node prints in the page's URL fragment.
//!
//! 256 random bits, so guessing it online is hopeless and there is no need
//! to count failed attempts against it (a wrong guess does not consume it,
//! which keeps a local process from burning the owner's token by racing to
//! pair first). It travels as `#pair=<base64url>` because a browser never
//! sends the fragment to the server, in a `Referer` or anywhere else (issue 16).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Length of a token in bytes (256 bits; the issue asks for at least 128).
pub const TOKEN_LEN: usize = 32;

/// A pairing token. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PairingToken([u8; TOKEN_LEN]);

impl core::fmt::Debug for PairingToken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PairingToken(..)")
    }
}

/// A string that is not a pairing token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a pairing token is {TOKEN_LEN} bytes in unpadded base64url")]
pub struct BadToken;

impl PairingToken {
    /// A token from bytes the caller drew from a secure RNG.
    pub fn from_bytes(bytes: [u8; TOKEN_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh token from the operating system's RNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; TOKEN_LEN];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The secret bytes (the key schedule's input).
    pub fn as_bytes(&self) -> &[u8; TOKEN_LEN] {
        &self.0
    }

    /// The form that goes into the URL fragment.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses [`PairingToken::encode`]'s form.
    pub fn decode(text: &str) -> Result<Self, BadToken> {
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| BadToken)?;
        let bytes: [u8; TOKEN_LEN] = bytes.try_into().map_err(|_| BadToken)?;
        Ok(Self(bytes))
    }
}

/// The node's outstanding token: at most one, used up by the first pairing
/// that proves it (so the URL works once), left in place by one that fails.
#[derive(Debug, Default)]
pub struct TokenSlot {
    current: Option<PairingToken>,
}

/// Why a pairing could not redeem the slot's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    /// No token is outstanding: the last one was used, and the node has not made another.
    #[error("the pairing token was already used")]
    Used,
    /// The proof does not match the outstanding token.
    #[error("wrong pairing token")]
    Wrong,
}

impl TokenSlot {
    /// A slot holding `token`.
    pub fn new(token: PairingToken) -> Self {
        Self {
            current: Some(token),
        }
    }

    /// Puts a new token in, replacing (and so revoking) any unused one.
    pub fn replace(&mut self, token: PairingToken) {
        self.current = Some(token);
    }

    /// Whether a token is outstanding.
    pub fn is_armed(&self) -> bool {
        self.current.is_some()
    }

    /// Takes the token out if `proves` accepts it; leaves it in place otherwise.
    pub fn redeem(
        &mut self,
        proves: impl FnOnce(&PairingToken) -> bool,
    ) -> Result<PairingToken, RedeemError> {
        let token = self.current.as_ref().ok_or(RedeemError::Used)?;
        if !proves(token) {
            return Err(RedeemError::Wrong);
        }
        self.current.take().ok_or(RedeemError::Used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_token_is_redeemed_once_and_survives_wrong_proofs() {
        let token = PairingToken::from_bytes([5; TOKEN_LEN]);
        let mut slot = TokenSlot::new(token.clone());
        assert_eq!(slot.redeem(|_| false), Err(RedeemError::Wrong));
        assert!(slot.is_armed());
        assert_eq!(slot.redeem(|t| *t == token), Ok(token.clone()));
        assert!(!slot.is_armed());
        assert_eq!(slot.redeem(|_| true), Err(RedeemError::Used));
        let next = PairingToken::from_bytes([6; TOKEN_LEN]);
        slot.replace(next.clone());
        assert_eq!(slot.redeem(|t| *t == token), Err(RedeemError::Wrong));
        assert_eq!(slot.redeem(|t| *t == next), Ok(next));
    }

    #[test]
    fn encoding_round_trips_and_fits_a_fragment() {
        let token = PairingToken::generate().unwrap();
        let text = token.encode();
        assert_eq!(text.len(), 43);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(PairingToken::decode(&text).unwrap(), token);
    }

    #[test]
    fn two_generated_tokens_differ() {
        assert_ne!(
            PairingToken::generate().unwrap(),
            PairingToken::generate().unwrap()
        );
    }

    #[test]
    fn short_long_and_padded_forms_are_refused() {
        let text = PairingToken::from_bytes([7; TOKEN_LEN]).encode();
        assert_eq!(PairingToken::decode(&text[..42]), Err(BadToken));
        assert_eq!(PairingToken::decode(&format!("{text}A")), Err(BadToken));
        assert_eq!(PairingToken::decode(&format!("{text}=")), Err(BadToken));
        assert_eq!(PairingToken::decode(""), Err(BadToken));
    }

    #[test]
    fn debug_hides_the_secret() {
        let token = PairingToken::from_bytes([0xab; TOKEN_LEN]);
        let shown = format!("{token:?}");
        assert!(!shown.contains(&token.encode()[..8]));
        assert!(!shown.contains("171"));
    }
}
